//! DORA metrics from deployment records, computed incrementally.
//!
//! [`DoraAccumulator`] takes [`DeploymentRecord`]s one at a time in O(1) each (the
//! records of one application and environment in the order they finished, as
//! [`HistoryStore::list`] returns them), keeps a few sums per environment, and
//! merges with an accumulator of later records, so metrics can be kept up to date as
//! deployments end, or computed in parallel over chunks of history.
//!
//! | metric | from |
//! |---|---|
//! | deployment frequency | successful deployments per day of the window |
//! | lead time for changes | `committed_at` → `finished_at` of successful deployments (mean) |
//! | change failure rate | failed or rolled back / ended deployments |
//! | time to restore | first failure of an application in an environment → its next success (mean) |
//! | success rate, rollback rate | succeeded / ended, rolled back / ended |
//! | mean deployment time | `started_at` → `finished_at` of ended deployments |
//!
//! ```
//! use deploy_core::dora::{DoraAccumulator, DoraWindow};
//! use deploy_core::model::*;
//!
//! let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
//! let release = Release::new(Version::new("1.0.0").unwrap(), ImageRef::parse("web:1").unwrap());
//! let mut acc = DoraAccumulator::new(DoraWindow::all());
//! for status in [DeploymentStatus::Succeeded, DeploymentStatus::RolledBack, DeploymentStatus::Succeeded] {
//!     let mut r = DeploymentRecord::new(app.clone(), Environment::Production, None, release.clone(), deploy_core::model::StrategyKind::Rolling);
//!     r.finish(status, None);
//!     acc.add(&r);
//! }
//! let m = acc.metrics(Some(Environment::Production));
//! assert_eq!(m.deployments, 3);
//! assert_eq!(m.change_failure_rate, Some(1.0 / 3.0));
//! assert!(m.mean_time_to_restore.is_some());
//! ```
//!
//! [`HistoryStore::list`]: crate::history::HistoryStore::list

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::history::{HistoryError, HistoryQuery, HistoryStore};
use crate::model::{AppId, DeploymentRecord, DeploymentStatus, Environment};

const MS_PER_DAY: f64 = 86_400_000.0;

/// Which deployments count: those that finished in `[since, until)`. An open end
/// takes everything on that side; the frequency is then per day of the span between
/// the first and the last deployment counted.
///
/// ```
/// use deploy_core::dora::DoraWindow;
/// let w = DoraWindow::between("2025-01-01T00:00:00Z".parse().unwrap(), "2025-01-08T00:00:00Z".parse().unwrap());
/// assert_eq!(w.days(), Some(7.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DoraWindow {
    /// The first instant counted.
    pub since: Option<Timestamp>,
    /// The first instant not counted.
    pub until: Option<Timestamp>,
}

impl DoraWindow {
    /// Every deployment.
    pub fn all() -> Self {
        Self::default()
    }

    /// Deployments that finished in `[since, until)`.
    pub fn between(since: Timestamp, until: Timestamp) -> Self {
        Self { since: Some(since), until: Some(until) }
    }

    /// The window's length in days, when both ends are set.
    pub fn days(&self) -> Option<f64> {
        let (s, u) = (self.since?, self.until?);
        Some((u.as_millisecond() - s.as_millisecond()) as f64 / MS_PER_DAY)
    }

    fn contains(&self, at: Timestamp) -> bool {
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u)
    }
}

/// Running sums for one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Tally {
    deployments: u64,
    succeeded: u64,
    failed: u64,
    rolled_back: u64,
    duration_ms: i128,
    durations: u64,
    lead_ms: i128,
    leads: u64,
    restore_ms: i128,
    restores: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.deployments += o.deployments;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.rolled_back += o.rolled_back;
        self.duration_ms += o.duration_ms;
        self.durations += o.durations;
        self.lead_ms += o.lead_ms;
        self.leads += o.leads;
        self.restore_ms += o.restore_ms;
        self.restores += o.restores;
        self.first_ms = min_opt(self.first_ms, o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The failure/success history of one application in one environment, reduced to
/// what a merge with the next chunk of history needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Outages {
    /// The chunk's first deployment: (failed?, finished ms).
    first: Option<(bool, i64)>,
    /// When the chunk starts with failures, the success that ended them.
    leading_restored_ms: Option<i64>,
    /// The first failure of the failures that end the chunk, not yet restored.
    open_since_ms: Option<i64>,
}

impl Outages {
    /// Appends `later` (whose deployments all finished after this chunk's) and
    /// returns the change to the environment's restore sum and count.
    fn append(&mut self, later: &Outages) -> (i128, u64) {
        let Some((later_starts_failing, later_first_ms)) = later.first else { return (0, 0) };
        let mut delta = (0i128, 0u64);
        let mut closes_leading = None;
        if let Some(open) = self.open_since_ms {
            if later_starts_failing {
                // `later` counted its first outage from its own first failure; it
                // began at `open`. When `later` never recovers, the outage simply
                // stays open since `open`.
                if let Some(restored) = later.leading_restored_ms {
                    delta.0 += i128::from(later_first_ms - open);
                    closes_leading = Some(restored);
                    self.open_since_ms = later.open_since_ms;
                }
            } else {
                delta = (i128::from(later_first_ms - open), 1);
                closes_leading = Some(later_first_ms);
                self.open_since_ms = later.open_since_ms;
            }
        } else {
            self.open_since_ms = later.open_since_ms;
        }
        match self.first {
            None => *self = *later,
            Some((true, _)) if self.leading_restored_ms.is_none() => self.leading_restored_ms = closes_leading,
            Some(_) => {}
        }
        delta
    }

    fn single(failed: bool, at_ms: i64) -> Self {
        Self { first: Some((failed, at_ms)), leading_restored_ms: None, open_since_ms: failed.then_some(at_ms) }
    }
}

fn env_index(e: Environment) -> usize {
    match e {
        Environment::Development => 0,
        Environment::Staging => 1,
        Environment::Production => 2,
        Environment::DisasterRecovery => 3,
    }
}

/// DORA metrics of a set of deployments.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DoraMetrics {
    /// Deployments that ended in the window.
    pub deployments: u64,
    /// Of those, succeeded.
    pub succeeded: u64,
    /// Of those, failed without restoring the previous release.
    pub failed: u64,
    /// Of those, rolled back.
    pub rolled_back: u64,
    /// Successful deployments per day.
    pub deployment_frequency_per_day: Option<f64>,
    /// Mean time from commit to a successful deployment.
    pub lead_time_for_changes: Option<Duration>,
    /// Failed or rolled back, over ended deployments.
    pub change_failure_rate: Option<f64>,
    /// Mean time from an application's first failure in an environment to its next
    /// success there.
    pub mean_time_to_restore: Option<Duration>,
    /// Succeeded over ended deployments.
    pub success_rate: Option<f64>,
    /// Rolled back over ended deployments.
    pub rollback_rate: Option<f64>,
    /// Mean running time of ended deployments.
    pub mean_deployment_time: Option<Duration>,
    /// Outages still open at the end of the records.
    pub open_outages: u64,
}

fn mean_ms(sum: i128, count: u64) -> Option<Duration> {
    (count > 0).then(|| Duration::from_millis(u64::try_from((sum / i128::from(count)).max(0)).unwrap_or(u64::MAX)))
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Incremental DORA metrics per environment. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct DoraAccumulator {
    window: DoraWindow,
    tallies: [Tally; 4],
    outages: HashMap<AppId, [Outages; 4]>,
}

impl DoraAccumulator {
    /// An empty accumulator counting deployments that finished in `window`.
    pub fn new(window: DoraWindow) -> Self {
        Self { window, ..Self::default() }
    }

    /// Reads every record matching `query` from `store`, oldest first.
    pub async fn from_history(
        store: &dyn HistoryStore,
        query: &HistoryQuery,
        window: DoraWindow,
    ) -> Result<Self, HistoryError> {
        let mut acc = Self::new(window);
        for record in store.list(query).await? {
            acc.add(&record);
        }
        Ok(acc)
    }

    /// Counts one record in O(1). Records that have not ended, ended outside the
    /// window, or are not rollouts (failovers and fail-backs move traffic between
    /// sites, they deploy no change), are ignored. Records of one application and
    /// environment must come in the order they finished.
    pub fn add(&mut self, record: &DeploymentRecord) {
        if !record.status.is_terminal() || !record.kind.is_rollout() {
            return;
        }
        let Some(finished) = record.finished_at else { return };
        if !self.window.contains(finished) {
            return;
        }
        let at = finished.as_millisecond();
        let env = env_index(record.environment);
        let t = &mut self.tallies[env];
        t.deployments += 1;
        match record.status {
            DeploymentStatus::Succeeded => t.succeeded += 1,
            DeploymentStatus::RolledBack => t.rolled_back += 1,
            _ => t.failed += 1,
        }
        if let Some(started) = record.started_at {
            t.duration_ms += i128::from(at - started.as_millisecond());
            t.durations += 1;
        }
        if record.status == DeploymentStatus::Succeeded
            && let Some(committed) = record.committed_at
            && committed <= finished
        {
            t.lead_ms += i128::from(at - committed.as_millisecond());
            t.leads += 1;
        }
        t.first_ms = min_opt(t.first_ms, Some(at));
        t.last_ms = t.last_ms.max(Some(at));

        let single = Outages::single(record.status.is_failure(), at);
        let state = match self.outages.get_mut(&record.app) {
            Some(s) => &mut s[env],
            None => &mut self.outages.entry(record.app.clone()).or_default()[env],
        };
        let (ms, n) = state.append(&single);
        self.tallies[env].restore_ms += ms;
        self.tallies[env].restores += n;
    }

    /// Adds the counts of `later`, an accumulator over records that all finished
    /// after this one's (per application and environment). Windows are not
    /// compared: both should count the same window.
    pub fn merge(&mut self, later: &DoraAccumulator) {
        for (mine, theirs) in self.tallies.iter_mut().zip(&later.tallies) {
            mine.merge(theirs);
        }
        for (app, theirs) in &later.outages {
            let mine = self.outages.entry(app.clone()).or_default();
            for env in 0..4 {
                let (ms, n) = mine[env].append(&theirs[env]);
                self.tallies[env].restore_ms += ms;
                self.tallies[env].restores += n;
            }
        }
    }

    /// The metrics of one environment, or of all together with `None`.
    pub fn metrics(&self, environment: Option<Environment>) -> DoraMetrics {
        let (t, envs): (Tally, Vec<usize>) = match environment {
            Some(e) => (self.tallies[env_index(e)], vec![env_index(e)]),
            None => {
                let mut all = Tally::default();
                self.tallies.iter().for_each(|t| all.merge(t));
                (all, (0..4).collect())
            }
        };
        let open_outages =
            self.outages.values().map(|s| envs.iter().filter(|e| s[**e].open_since_ms.is_some()).count() as u64).sum();
        let days = self.window.days().or_else(|| {
            let (f, l) = (t.first_ms?, t.last_ms?);
            Some(((l - f) as f64 / MS_PER_DAY).max(1.0))
        });
        DoraMetrics {
            deployments: t.deployments,
            succeeded: t.succeeded,
            failed: t.failed,
            rolled_back: t.rolled_back,
            deployment_frequency_per_day: days.filter(|d| *d > 0.0).map(|d| t.succeeded as f64 / d),
            lead_time_for_changes: mean_ms(t.lead_ms, t.leads),
            change_failure_rate: ratio(t.failed + t.rolled_back, t.deployments),
            mean_time_to_restore: mean_ms(t.restore_ms, t.restores),
            success_rate: ratio(t.succeeded, t.deployments),
            rollback_rate: ratio(t.rolled_back, t.deployments),
            mean_deployment_time: mean_ms(t.duration_ms, t.durations),
            open_outages,
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use jiff::Timestamp;

    use crate::model::*;

    /// A record of `app` in `env` that started at `start_s` seconds, ran
    /// `run_s` seconds and ended with `status`, committed `lead_s` before it ended.
    pub(crate) fn record(
        app: &str,
        env: Environment,
        start_s: i64,
        run_s: i64,
        status: DeploymentStatus,
        lead_s: i64,
    ) -> DeploymentRecord {
        let id = AppId::new(Namespace::new("shop").unwrap(), Name::new(app).unwrap());
        let to = Release::new(Version::new("1.0.0").unwrap(), ImageRef::parse("web:1").unwrap());
        let mut r = DeploymentRecord::new(id, env, None, to, crate::model::StrategyKind::Rolling);
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        r.status = status;
        r.created_at = at(start_s);
        r.started_at = Some(at(start_s));
        r.finished_at = Some(at(start_s + run_s));
        r.committed_at = Some(at(start_s + run_s - lead_s));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::record;
    use super::*;
    use DeploymentStatus::{Failed, RolledBack, Succeeded};
    use Environment::{Production as P, Staging as S};

    #[test]
    fn computes_every_metric_per_environment() {
        let mut acc = DoraAccumulator::new(DoraWindow::all());
        let day = 86_400;
        // web in production: ok, fail at 2d+60, rollback, ok at 3d+60 → restore 1 day.
        acc.add(&record("web", P, 0, 60, Succeeded, 3600));
        acc.add(&record("web", P, 2 * day, 60, Failed, 0));
        acc.add(&record("web", P, 2 * day + 600, 60, RolledBack, 0));
        acc.add(&record("web", P, 3 * day, 60, Succeeded, 7200));
        // api in production fails and stays failed; staging is separate.
        acc.add(&record("api", P, day, 120, RolledBack, 0));
        acc.add(&record("web", S, 0, 30, Succeeded, 60));

        let m = acc.metrics(Some(P));
        assert_eq!((m.deployments, m.succeeded, m.failed, m.rolled_back), (5, 2, 1, 2));
        assert_eq!(m.change_failure_rate, Some(0.6));
        assert_eq!(m.success_rate, Some(0.4));
        assert_eq!(m.rollback_rate, Some(0.4));
        assert_eq!(m.mean_time_to_restore, Some(Duration::from_secs(day as u64)));
        assert_eq!(m.lead_time_for_changes, Some(Duration::from_secs(5400)));
        assert_eq!(m.mean_deployment_time, Some(Duration::from_secs(72)));
        assert_eq!(m.open_outages, 1);
        // 2 successes over the 3 days between first and last.
        assert!((m.deployment_frequency_per_day.unwrap() - 2.0 / 3.0).abs() < 1e-3);

        let s = acc.metrics(Some(S));
        assert_eq!((s.deployments, s.mean_time_to_restore), (1, None));
        assert_eq!(acc.metrics(None).deployments, 6);
    }

    #[test]
    fn window_and_unfinished_records_are_respected() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let mut acc = DoraAccumulator::new(DoraWindow::between(at(0), at(7 * 86_400)));
        acc.add(&record("web", P, 10, 10, Succeeded, 0));
        acc.add(&record("web", P, 8 * 86_400, 10, Succeeded, 0));
        let mut running = record("web", P, 20, 10, Succeeded, 0);
        running.status = DeploymentStatus::InProgress;
        acc.add(&running);
        let m = acc.metrics(Some(P));
        assert_eq!(m.deployments, 1);
        assert!((m.deployment_frequency_per_day.unwrap() - 1.0 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn failovers_are_not_deployments() {
        let mut acc = DoraAccumulator::new(DoraWindow::all());
        acc.add(&record("web", P, 0, 60, Succeeded, 0));
        let mut failover = record("web", P, 100, 60, Failed, 0);
        failover.kind = crate::model::RecordKind::Failover { from: "eu".into(), to: "us".into() };
        acc.add(&failover);
        let m = acc.metrics(Some(P));
        assert_eq!((m.deployments, m.failed, m.open_outages), (1, 0, 0));
    }

    proptest::proptest! {
        #[test]
        fn merging_chunks_equals_one_pass(
            events in proptest::collection::vec((0usize..3, proptest::bool::ANY, 0u8..3), 0..60),
            split in 0usize..60,
        ) {
            let records: Vec<_> = events
                .iter()
                .enumerate()
                .map(|(i, (app, prod, status))| {
                    let status = [Succeeded, Failed, RolledBack][*status as usize];
                    let env = if *prod { P } else { S };
                    record(["a", "b", "c"][*app], env, i as i64 * 100, 10 + *app as i64, status, 5)
                })
                .collect();
            let split = split.min(records.len());
            let mut whole = DoraAccumulator::new(DoraWindow::all());
            records.iter().for_each(|r| whole.add(r));
            let mut left = DoraAccumulator::new(DoraWindow::all());
            records[..split].iter().for_each(|r| left.add(r));
            let mut right = DoraAccumulator::new(DoraWindow::all());
            records[split..].iter().for_each(|r| right.add(r));
            left.merge(&right);
            for env in [None, Some(P), Some(S)] {
                proptest::prop_assert_eq!(left.metrics(env), whole.metrics(env));
            }
        }
    }
}
