//! Telling people: the [`Notifier`] trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{AppId, Environment};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// A deployment began.
    DeploymentStarted,
    /// A deployment finished and the new release serves all traffic.
    DeploymentSucceeded,
    /// A deployment failed.
    DeploymentFailed,
    /// A deployment was rolled back.
    RolledBack,
    /// A pipeline finished successfully.
    PipelineSucceeded,
    /// A pipeline failed.
    PipelineFailed,
}

/// A message for people: chat, e-mail, a webhook.
///
/// ```
/// use deploy_core::notify::{Notification, NotificationKind};
/// let n = Notification::new(NotificationKind::RolledBack, "web 2.0.0 rolled back", "error rate 7%")
///     .field("deployment", "abc");
/// assert_eq!(n.fields["deployment"], "abc");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// What happened.
    pub kind: NotificationKind,
    /// A one-line summary.
    pub title: String,
    /// The details.
    pub message: String,
    /// The application concerned.
    pub app: Option<AppId>,
    /// The environment concerned.
    pub environment: Option<Environment>,
    /// Extra facts (deployment id, versions, duration).
    pub fields: BTreeMap<String, String>,
    /// When it happened.
    pub at: Timestamp,
}

impl Notification {
    /// A notification of `kind` made now.
    pub fn new(kind: NotificationKind, title: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            title: title.into(),
            message: message.into(),
            app: None,
            environment: None,
            fields: BTreeMap::new(),
            at: Timestamp::now(),
        }
    }

    /// Sets the application.
    #[must_use]
    pub fn app(mut self, app: AppId) -> Self {
        self.app = Some(app);
        self
    }

    /// Sets the environment.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Adds a fact.
    #[must_use]
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

/// A notification that was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver answered with an error.
    #[error("notification rejected with status {status}: {body}")]
    Rejected {
        /// The receiver's status code.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The notifier's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(NotifyError);

impl Classify for NotifyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Rejected { status, .. } => ErrorKind::from_http_status(*status),
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// Delivers notifications. Callers treat a failed notification as a warning, never
/// as a reason to fail a deployment.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `notification` once.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}
