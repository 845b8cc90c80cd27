//! What an audit reports.

use std::fmt;

use deploy_core::scan::Severity;
use serde::{Deserialize, Serialize};

/// One problem an audit found. Never contains a secret value: findings about secrets
/// name the variable, not its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// A stable rule id (`run-as-non-root`, `cors-wildcard`), for allowlists and dashboards.
    pub id: String,
    /// How serious it is.
    pub severity: Severity,
    /// What it is about (`Deployment shop/checkout container app`, `JWT_SECRET`).
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub remediation: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        id: impl Into<String>,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
        remediation: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            severity,
            subject: subject.into(),
            message: message.into(),
            remediation: remediation.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} {}: {}", self.severity, self.id, self.subject, self.message)
    }
}

/// The worst severity among `findings`, if any.
///
/// ```
/// use deploy_core::scan::Severity;
/// use deploy_security::audit::{Finding, worst_severity};
/// let f = |s| Finding::new("x", s, "y", "z", "w");
/// assert_eq!(worst_severity(&[f(Severity::Low), f(Severity::High)]), Some(Severity::High));
/// ```
pub fn worst_severity(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}
