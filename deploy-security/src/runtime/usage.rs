//! Resource use from one `stats` sample: memory as `docker stats` counts it, CPU as
//! a percentage of one CPU, and the number of tasks.

use bollard::models::ContainerStatsResponse;

/// What a container uses now. `None` where the engine did not say (a stopped
/// container, a cgroup without the controller).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// Memory in bytes, page cache that can be reclaimed (`inactive_file`) left out,
    /// as `docker stats` shows it.
    pub memory_bytes: Option<u64>,
    /// CPU time used between the engine's two samples, in percent of one CPU (200 is
    /// two CPUs busy).
    pub cpu_percent: Option<f64>,
    /// Processes and threads.
    pub pids: Option<u64>,
}

impl ResourceUsage {
    /// The usage in one `stats` answer (with `precpu_stats`, as `stream=false` gives).
    pub fn from_stats(stats: &ContainerStatsResponse) -> Self {
        let memory_bytes = stats.memory_stats.as_ref().and_then(|memory| {
            let usage = memory.usage?;
            let inactive = memory
                .stats
                .as_ref()
                .and_then(|s| s.get("total_inactive_file").or_else(|| s.get("inactive_file")).copied())
                .unwrap_or(0);
            Some(usage.saturating_sub(inactive))
        });
        let cpu_percent = (|| {
            let now = stats.cpu_stats.as_ref()?;
            let before = stats.precpu_stats.as_ref()?;
            let used = now.cpu_usage.as_ref()?.total_usage?.checked_sub(before.cpu_usage.as_ref()?.total_usage?)?;
            let elapsed = now.system_cpu_usage?.checked_sub(before.system_cpu_usage?)?;
            if elapsed == 0 {
                return None;
            }
            let cpus = now.online_cpus.filter(|n| *n > 0).map_or(1.0, f64::from);
            #[expect(clippy::cast_precision_loss, reason = "nanosecond counters; a ratio needs no exact integers")]
            let ratio = used as f64 / elapsed as f64;
            Some(ratio * cpus * 100.0)
        })();
        let pids = stats.pids_stats.as_ref().and_then(|pids| pids.current);
        Self { memory_bytes, cpu_percent, pids }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerPidsStats};

    use super::*;

    #[test]
    fn memory_leaves_out_reclaimable_cache_and_cpu_is_per_cpu_percent() {
        let cpu = |total, system| ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage { total_usage: Some(total), ..Default::default() }),
            system_cpu_usage: Some(system),
            online_cpus: Some(2),
            ..Default::default()
        };
        let stats = ContainerStatsResponse {
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(30_000_000),
                stats: Some(HashMap::from([("inactive_file".to_owned(), 10_000_000)])),
                ..Default::default()
            }),
            cpu_stats: Some(cpu(1_500, 10_000)),
            precpu_stats: Some(cpu(1_000, 8_000)),
            pids_stats: Some(ContainerPidsStats { current: Some(4), ..Default::default() }),
            ..Default::default()
        };
        let usage = ResourceUsage::from_stats(&stats);
        assert_eq!(usage.memory_bytes, Some(20_000_000));
        assert_eq!(usage.cpu_percent, Some(50.0), "500 of 2000 ns on 2 CPUs");
        assert_eq!(usage.pids, Some(4));
        assert_eq!(ResourceUsage::from_stats(&ContainerStatsResponse::default()), ResourceUsage::default());
    }
}
