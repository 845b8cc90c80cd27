//! The checks, as pure functions of what the engine reports (inspect, top, stats),
//! so that each rule is tested without a container.

use bollard::models::{ContainerInspectResponse, ContainerTopResponse};
use deploy_core::scan::Severity;

use super::RuntimePolicy;
use super::usage::ResourceUsage;
use deploy_core::scan::Finding;

/// Host paths whose bind mount gives a container control of the host (or its
/// secrets); a mount of one of them, or of a parent, is critical.
const SENSITIVE_HOST_PATHS: &[&str] = &[
    "/",
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/lib/docker",
    "/run/containerd",
];

/// Capabilities that amount to root on the host or break isolation.
const DANGEROUS_CAPABILITIES: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "DAC_READ_SEARCH",
    "NET_ADMIN",
    "SYS_BOOT",
    "BPF",
    "PERFMON",
];

/// The findings that the container's configuration alone gives.
pub(crate) fn configuration_findings(
    subject: &str,
    inspect: &ContainerInspectResponse,
    policy: &RuntimePolicy,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let host = inspect.host_config.clone().unwrap_or_default();
    if host.privileged == Some(true) {
        findings.push(Finding::new(
            "runtime-privileged",
            Severity::Critical,
            subject,
            "the container runs privileged: every capability and every host device",
            "run it without --privileged; add only the capabilities it needs",
        ));
    }
    for capability in host.cap_add.iter().flatten() {
        let name = capability.trim_start_matches("CAP_").to_ascii_uppercase();
        if policy
            .allowed_capabilities
            .iter()
            .any(|allowed| allowed.trim_start_matches("CAP_").eq_ignore_ascii_case(&name))
        {
            continue;
        }
        let severity = if DANGEROUS_CAPABILITIES.contains(&name.as_str()) { Severity::High } else { Severity::Medium };
        findings.push(Finding::new(
            "runtime-added-capability",
            severity,
            subject,
            format!("the container was given capability {name}, which the policy does not allow"),
            "drop the capability (--cap-drop ALL, then add only what the process needs), or allow it in the policy",
        ));
    }
    if host.readonly_rootfs != Some(true) && !policy.allow_writable_root_fs {
        findings.push(Finding::new(
            "runtime-writable-root-fs",
            Severity::Medium,
            subject,
            "the root file system is writable: an intruder can change the container's binaries",
            "run with --read-only and mount writable volumes or tmpfs only where the app writes",
        ));
    }
    for mount in inspect.mounts.iter().flatten() {
        if mount.typ.as_deref() != Some("bind") {
            continue;
        }
        let source = mount.source.clone().unwrap_or_default();
        if policy.allowed_host_paths.iter().any(|allowed| is_within(&source, allowed)) {
            continue;
        }
        // The mount shows a sensitive path (it is one, or a parent of one), or lies
        // inside one (`/etc/ssl`); everything lies inside `/`, which counts only whole.
        let sensitive = SENSITIVE_HOST_PATHS
            .iter()
            .any(|path| is_within(path, &source) || (*path != "/" && is_within(&source, path)));
        let writable = mount.rw.unwrap_or(true);
        let severity = match (sensitive, writable) {
            (true, _) => Severity::Critical,
            (false, true) => Severity::High,
            (false, false) => Severity::Medium,
        };
        let destination = mount.destination.clone().unwrap_or_default();
        let access = if writable { "read-write" } else { "read-only" };
        findings.push(Finding::new(
            "runtime-host-mount",
            severity,
            subject,
            format!("host path {source} is mounted {access} at {destination}"),
            "use a named volume, or allow the path in the policy if the container must see it",
        ));
    }
    for (namespace, mode) in [
        ("network", &host.network_mode),
        ("pid", &host.pid_mode),
        ("ipc", &host.ipc_mode),
        ("uts", &host.uts_mode),
        ("user", &host.userns_mode),
    ] {
        if mode.as_deref() == Some("host") {
            findings.push(Finding::new(
                "runtime-host-namespace",
                Severity::High,
                subject,
                format!("the container shares the host's {namespace} namespace"),
                format!(
                    "remove --{namespace}=host",
                    namespace = if namespace == "user" { "userns" } else { namespace }
                ),
            ));
        }
    }
    let user = inspect.config.as_ref().and_then(|config| config.user.clone()).unwrap_or_default();
    if is_root_user(&user) && !policy.allow_root {
        findings.push(Finding::new(
            "runtime-runs-as-root",
            Severity::Medium,
            subject,
            if user.is_empty() {
                "no user is set: the container runs as root".to_owned()
            } else {
                format!("the container runs as {user}")
            },
            "set a numeric non-root USER in the image, or --user at run time",
        ));
    }
    if host.memory.unwrap_or(0) <= 0 && policy.require_memory_limit {
        findings.push(Finding::new(
            "runtime-no-memory-limit",
            Severity::Low,
            subject,
            "the container has no memory limit: a leak takes the host's memory",
            "set --memory",
        ));
    }
    findings
}

/// Whether `user` (`""`, `root`, `0`, `0:0`, `root:staff`, `1000`) means uid 0.
fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("").trim();
    name.is_empty() || name == "root" || name == "0"
}

/// Whether `path` is `dir` or inside it, comparing whole components.
fn is_within(path: &str, dir: &str) -> bool {
    let path = path.trim_end_matches('/');
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// One running process, from `top`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: String,
    pub(crate) user: String,
    pub(crate) command: String,
}

/// The processes of a `top` answer (`ps -ef` columns: `UID`, `PID`, …, `CMD`).
pub(crate) fn processes(top: &ContainerTopResponse) -> Vec<Process> {
    let titles = top.titles.clone().unwrap_or_default();
    let column = |name: &str| titles.iter().position(|title| title.eq_ignore_ascii_case(name));
    let (Some(command), pid, user) =
        (column("CMD").or(column("COMMAND")), column("PID"), column("UID").or(column("USER")))
    else {
        return Vec::new();
    };
    top.processes
        .iter()
        .flatten()
        .map(|row| {
            let cell = |index: Option<usize>| index.and_then(|i| row.get(i)).cloned().unwrap_or_default();
            Process { pid: cell(pid), user: cell(user), command: cell(Some(command)) }
        })
        .collect()
}

/// Whether `command` is allowed by `entry`: the same program (`httpd` allows
/// `/usr/sbin/httpd -f`) or the same leading words (`/bin/busybox httpd` allows
/// `/bin/busybox httpd -f -p 8080`, not `/bin/busybox nc`).
pub(crate) fn is_allowed(command: &str, entry: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    let allowed: Vec<&str> = entry.split_whitespace().collect();
    match (allowed.as_slice(), words.first()) {
        ([program], Some(first)) if !program.contains('/') => first.rsplit('/').next() == Some(*program),
        (_, _) if !allowed.is_empty() => words.len() >= allowed.len() && words[..allowed.len()] == allowed[..],
        _ => false,
    }
}

/// A finding for each process that no entry of the allow-list allows. An empty
/// allow-list allows every process (the check is off).
pub(crate) fn process_findings(subject: &str, processes: &[Process], policy: &RuntimePolicy) -> Vec<Finding> {
    if policy.allowed_processes.is_empty() {
        return Vec::new();
    }
    processes
        .iter()
        .filter(|process| !policy.allowed_processes.iter().any(|entry| is_allowed(&process.command, entry)))
        .map(|process| {
            Finding::new(
                "runtime-unexpected-process",
                Severity::High,
                subject,
                format!(
                    "process {} ({}, user {}) is not in the allow-list",
                    process.pid, process.command, process.user
                ),
                "find out what started it; add it to the allow-list only if the app needs it",
            )
        })
        .collect()
}

/// A finding for each resource used over the policy's limit.
pub(crate) fn usage_findings(subject: &str, usage: &ResourceUsage, policy: &RuntimePolicy) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let (Some(max), Some(used)) = (policy.max_memory_bytes, usage.memory_bytes)
        && used > max
    {
        findings.push(Finding::new(
            "runtime-memory-over-limit",
            Severity::Medium,
            subject,
            format!("the container uses {used} bytes of memory, over the policy's {max}"),
            "look for a leak, or raise the limit if the app needs the memory",
        ));
    }
    if let (Some(max), Some(used)) = (policy.max_cpu_percent, usage.cpu_percent)
        && used > max
    {
        findings.push(Finding::new(
            "runtime-cpu-over-limit",
            Severity::Medium,
            subject,
            format!("the container uses {used:.1} % of a CPU, over the policy's {max:.1} %"),
            "look for a busy loop or unexpected work (a miner), or raise the limit",
        ));
    }
    if let (Some(max), Some(used)) = (policy.max_pids, usage.pids)
        && used > max
    {
        findings.push(Finding::new(
            "runtime-pids-over-limit",
            Severity::Medium,
            subject,
            format!("the container runs {used} processes or threads, over the policy's {max}"),
            "look for a fork loop, or set --pids-limit",
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, HostConfig, MountPoint};

    use super::*;

    fn inspect(host: HostConfig, user: &str, mounts: Vec<MountPoint>) -> ContainerInspectResponse {
        ContainerInspectResponse {
            host_config: Some(host),
            config: Some(ContainerConfig { user: Some(user.to_owned()), ..Default::default() }),
            mounts: Some(mounts),
            ..Default::default()
        }
    }

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn a_locked_down_container_has_no_configuration_findings() {
        let host = HostConfig {
            readonly_rootfs: Some(true),
            memory: Some(64 << 20),
            cap_drop: Some(vec!["ALL".into()]),
            ..Default::default()
        };
        assert!(
            configuration_findings("c", &inspect(host, "65534:65534", vec![]), &RuntimePolicy::default()).is_empty()
        );
    }

    #[test]
    fn each_risky_setting_is_its_own_finding() {
        let host = HostConfig {
            privileged: Some(true),
            cap_add: Some(vec!["CAP_SYS_ADMIN".into(), "NET_BIND_SERVICE".into(), "CHOWN".into()]),
            network_mode: Some("host".into()),
            pid_mode: Some("host".into()),
            ..Default::default()
        };
        let mounts = vec![
            MountPoint {
                typ: Some("bind".into()),
                source: Some("/etc".into()),
                destination: Some("/host-etc".into()),
                rw: Some(false),
                ..Default::default()
            },
            MountPoint {
                typ: Some("bind".into()),
                source: Some("/srv/data".into()),
                destination: Some("/data".into()),
                rw: Some(true),
                ..Default::default()
            },
            MountPoint {
                typ: Some("volume".into()),
                source: Some("/var/lib/docker/volumes/x".into()),
                ..Default::default()
            },
        ];
        let policy = RuntimePolicy::default().allow_capability("NET_BIND_SERVICE").require_memory_limit(true);
        let findings = configuration_findings("c", &inspect(host, "", mounts), &policy);
        assert_eq!(
            ids(&findings),
            [
                "runtime-privileged",
                "runtime-added-capability",
                "runtime-added-capability",
                "runtime-writable-root-fs",
                "runtime-host-mount",
                "runtime-host-mount",
                "runtime-host-namespace",
                "runtime-host-namespace",
                "runtime-runs-as-root",
                "runtime-no-memory-limit",
            ]
        );
        assert_eq!(findings[1].severity, Severity::High, "SYS_ADMIN: {}", findings[1]);
        assert_eq!(findings[2].severity, Severity::Medium, "CHOWN: {}", findings[2]);
        assert_eq!(findings[4].severity, Severity::Critical, "/etc: {}", findings[4]);
        assert_eq!(findings[5].severity, Severity::High, "a writable bind: {}", findings[5]);
        let var = MountPoint {
            typ: Some("bind".into()),
            source: Some("/var/run".into()),
            rw: Some(false),
            ..Default::default()
        };
        let parent =
            configuration_findings("c", &inspect(HostConfig::default(), "1", vec![var]), &RuntimePolicy::default());
        assert_eq!(parent[1].severity, Severity::Critical, "/var/run holds docker.sock: {}", parent[1]);
    }

    #[test]
    fn root_is_recognised_in_every_spelling() {
        for user in ["", "root", "0", "0:0", "root:staff"] {
            assert!(is_root_user(user), "{user}");
        }
        for user in ["1000", "nobody", "65534:65534", "10"] {
            assert!(!is_root_user(user), "{user}");
        }
    }

    #[test]
    fn paths_compare_by_component() {
        assert!(is_within("/etc/ssl", "/etc"));
        assert!(is_within("/etc", "/etc/"));
        assert!(!is_within("/etcetera", "/etc"));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn the_allow_list_matches_programs_and_leading_words() {
        assert!(is_allowed("/usr/sbin/httpd -f", "httpd"));
        assert!(is_allowed("/bin/busybox httpd -f -p 8080", "/bin/busybox httpd"));
        assert!(!is_allowed("/bin/busybox nc -l -p 4444", "/bin/busybox httpd"));
        assert!(!is_allowed("/bin/busybox", "/bin/busybox httpd"));
        assert!(!is_allowed("httpd-evil", "httpd"));
        assert!(!is_allowed("anything", ""));
    }

    #[test]
    fn top_rows_become_processes_and_unlisted_ones_findings() {
        let top = ContainerTopResponse {
            titles: Some(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"].map(String::from).to_vec()),
            processes: Some(vec![
                ["root", "101", "90", "0", "10:00", "?", "00:00:00", "/bin/busybox httpd -f"]
                    .map(String::from)
                    .to_vec(),
                ["root", "102", "90", "0", "10:01", "?", "00:00:00", "/bin/busybox nc -l -p 4444"]
                    .map(String::from)
                    .to_vec(),
            ]),
        };
        let processes = processes(&top);
        assert_eq!(
            processes[1],
            Process { pid: "102".into(), user: "root".into(), command: "/bin/busybox nc -l -p 4444".into() }
        );
        let policy = RuntimePolicy::default().allow_process("/bin/busybox httpd");
        let findings = process_findings("c", &processes, &policy);
        assert_eq!(ids(&findings), ["runtime-unexpected-process"]);
        assert!(findings[0].message.contains("nc -l"), "{}", findings[0]);
        assert!(process_findings("c", &processes, &RuntimePolicy::default()).is_empty(), "no allow-list, no check");
    }

    #[test]
    fn usage_over_the_policy_is_reported_and_usage_under_it_is_not() {
        let usage = ResourceUsage { memory_bytes: Some(30 << 20), cpu_percent: Some(5.0), pids: Some(3) };
        let policy = RuntimePolicy::default().max_memory_bytes(16 << 20).max_cpu_percent(50.0).max_pids(10);
        assert_eq!(ids(&usage_findings("c", &usage, &policy)), ["runtime-memory-over-limit"]);
        let unknown = ResourceUsage { memory_bytes: None, cpu_percent: None, pids: None };
        assert!(usage_findings("c", &unknown, &policy).is_empty());
    }
}
