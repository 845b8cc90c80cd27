//! The suite's one finding type: what an audit, a scan gate or a linter found.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Severity;

/// One problem found by a check of a configuration: a manifest or environment audit
/// (deploy-security), a Dockerfile lint (deploy-docker), a header audit. Rated on
/// the scanners' [`Severity`] scale, so that every source of findings can be gated,
/// counted and sorted the same way. Never contains a secret value: findings about
/// secrets name the variable, not its content.
///
/// ```
/// use deploy_core::scan::{Finding, Severity};
/// let f = Finding::new("DL3007", Severity::Medium, "Dockerfile", "pin a version of ubuntu", "use ubuntu:24.04")
///     .at_line(1);
/// assert_eq!(f.to_string(), "[MEDIUM] DL3007 Dockerfile:1: pin a version of ubuntu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// A stable rule id (`run-as-non-root`, `cors-wildcard`, `DL3007`), for
    /// allowlists and dashboards.
    pub id: String,
    /// How serious it is.
    pub severity: Severity,
    /// What it is about (`Deployment shop/checkout container app`, `JWT_SECRET`,
    /// `Dockerfile`).
    pub subject: String,
    /// The line of `subject` it is about, from 1, when the subject is a text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it (empty when the message says it).
    pub remediation: String,
}

impl Finding {
    /// A finding about `subject` as a whole.
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
            line: None,
            message: message.into(),
            remediation: remediation.into(),
        }
    }

    /// The finding at `line` (from 1) of its subject.
    #[must_use]
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} {}", self.severity, self.id, self.subject)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The worst severity among `findings`, if any.
///
/// ```
/// use deploy_core::scan::{Finding, Severity, worst_severity};
/// let f = |s| Finding::new("x", s, "y", "z", "w");
/// assert_eq!(worst_severity(&[f(Severity::Low), f(Severity::High)]), Some(Severity::High));
/// assert_eq!(worst_severity(&[]), None);
/// ```
pub fn worst_severity(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}
