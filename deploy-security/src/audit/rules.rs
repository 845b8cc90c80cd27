//! The manifest rules, in the spirit of kube-score and Polaris.

use deploy_core::scan::Severity;

use super::pod::{ContainerView, PodView};
use deploy_core::scan::Finding;

/// Capabilities that amount to root on the node.
const DANGEROUS_CAPABILITIES: &[&str] =
    &["ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "DAC_READ_SEARCH"];

/// Every rule id this audit can report, with its severity.
pub const MANIFEST_RULES: &[(&str, Severity)] = &[
    ("privileged", Severity::Critical),
    ("run-as-non-root", Severity::High),
    ("privilege-escalation-allowed", Severity::High),
    ("dangerous-capabilities", Severity::High),
    ("host-network", Severity::High),
    ("host-pid", Severity::High),
    ("host-ipc", Severity::High),
    ("host-path-volume", Severity::High),
    ("read-only-root-filesystem", Severity::Medium),
    ("capabilities-not-dropped", Severity::Medium),
    ("image-tag-latest", Severity::Medium),
    ("memory-limit-missing", Severity::Medium),
    ("readiness-probe-missing", Severity::Medium),
    ("cpu-request-missing", Severity::Low),
    ("memory-request-missing", Severity::Low),
    ("cpu-limit-missing", Severity::Low),
    ("liveness-probe-missing", Severity::Low),
    ("service-account-token-automount", Severity::Low),
];

fn severity_of(id: &str) -> Severity {
    MANIFEST_RULES.iter().find(|(rule, _)| *rule == id).map_or(Severity::Unknown, |(_, s)| *s)
}

struct Sink<'a> {
    findings: &'a mut Vec<Finding>,
}

impl Sink<'_> {
    fn push(&mut self, id: &str, subject: &str, message: impl Into<String>, remediation: &str) {
        self.findings.push(Finding::new(id, severity_of(id), subject, message, remediation));
    }
}

/// Applies every rule to `pod`.
pub(crate) fn check_pod(pod: &PodView) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut sink = Sink { findings: &mut findings };
    let object = pod.object.as_str();
    for (flag, id, what) in [
        (pod.host_network, "host-network", "hostNetwork"),
        (pod.host_pid, "host-pid", "hostPID"),
        (pod.host_ipc, "host-ipc", "hostIPC"),
    ] {
        if flag == Some(true) {
            sink.push(id, object, format!("{what} shares the node's namespace with the pod"), "remove it");
        }
    }
    for path in pod.host_path_volumes.iter().flatten() {
        sink.push(
            "host-path-volume",
            object,
            format!("mounts {path} from the node"),
            "use a PVC, ConfigMap or emptyDir",
        );
    }
    if let Some(automount) = pod.automount_service_account_token
        && automount != Some(false)
    {
        sink.push(
            "service-account-token-automount",
            object,
            "the service account token is mounted into every container",
            "set automountServiceAccountToken: false unless the pod calls the API server",
        );
    }
    for container in &pod.containers {
        check_container(pod, container, &mut sink);
    }
    findings
}

fn check_container(pod: &PodView, c: &ContainerView, sink: &mut Sink<'_>) {
    let subject = format!("{} container {}", pod.object, c.name);
    let subject = subject.as_str();
    if c.privileged == Some(true) {
        sink.push(
            "privileged",
            subject,
            "runs privileged, with every capability of the node",
            "remove privileged: true",
        );
    }
    let run_as_user = c.run_as_user.or(pod.run_as_user);
    let non_root = c.run_as_non_root.or(pod.run_as_non_root);
    if run_as_user == Some(0) || (non_root != Some(true) && run_as_user.is_none_or(|u| u == 0)) {
        sink.push(
            "run-as-non-root",
            subject,
            if run_as_user == Some(0) { "runs as root (runAsUser: 0)" } else { "may run as root" },
            "set runAsNonRoot: true and a runAsUser above 0",
        );
    }
    if c.allow_privilege_escalation != Some(false) {
        sink.push(
            "privilege-escalation-allowed",
            subject,
            "allows privilege escalation (setuid binaries)",
            "set allowPrivilegeEscalation: false",
        );
    }
    if c.read_only_root_filesystem != Some(true) {
        sink.push(
            "read-only-root-filesystem",
            subject,
            "has a writable root filesystem",
            "set readOnlyRootFilesystem: true and mount an emptyDir where it must write",
        );
    }
    if !c.drop_capabilities.iter().any(|cap| cap.eq_ignore_ascii_case("ALL")) {
        sink.push(
            "capabilities-not-dropped",
            subject,
            "keeps the runtime's default capabilities",
            "drop ALL capabilities",
        );
    }
    let dangerous: Vec<&str> = c
        .add_capabilities
        .iter()
        .map(|cap| cap.trim_start_matches("CAP_"))
        .filter(|cap| DANGEROUS_CAPABILITIES.iter().any(|d| d.eq_ignore_ascii_case(cap)))
        .collect();
    if !dangerous.is_empty() {
        sink.push("dangerous-capabilities", subject, format!("adds {}", dangerous.join(", ")), "do not add them");
    }
    for (present, id, what) in [
        (c.cpu_request, "cpu-request-missing", "no CPU request"),
        (c.memory_request, "memory-request-missing", "no memory request"),
        (c.cpu_limit, "cpu-limit-missing", "no CPU limit"),
        (c.memory_limit, "memory-limit-missing", "no memory limit"),
    ] {
        if !present {
            sink.push(id, subject, what, "set resources.requests and resources.limits");
        }
    }
    if !c.liveness_probe {
        sink.push("liveness-probe-missing", subject, "no liveness probe", "add a liveness probe");
    }
    if !c.readiness_probe {
        sink.push(
            "readiness-probe-missing",
            subject,
            "no readiness probe: traffic may reach it before it is ready",
            "add a readiness probe",
        );
    }
    if uses_latest_tag(&c.image) {
        sink.push(
            "image-tag-latest",
            subject,
            format!("image {} is not pinned", c.image),
            "use a version tag or a digest",
        );
    }
}

/// Whether an image reference floats: tag `latest`, or no tag and no digest.
fn uses_latest_tag(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_detection() {
        for floating in ["nginx", "nginx:latest", "localhost:5000/app", "localhost:5000/app:latest"] {
            assert!(uses_latest_tag(floating), "{floating}");
        }
        for pinned in ["nginx:1.27", "localhost:5000/app:1", "app@sha256:abc", "app:latest@sha256:abc"] {
            assert!(!uses_latest_tag(pinned), "{pinned}");
        }
    }
}
