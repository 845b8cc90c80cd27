//! The notifications a rollout sends through the engine's notifier
//! ([`RolloutEngineBuilder::notifier`](super::RolloutEngineBuilder::notifier)): one when
//! it starts and one when it ends, so that chat, webhooks and CDEvents receivers hear
//! of every rollout without the caller building messages.
//!
//! Delivery is best effort and bounded: a notifier that fails or hangs is logged and
//! never fails, delays beyond [`DELIVERY_DEADLINE`] or rolls back a rollout.

use std::time::Duration;

use super::RolloutReport;
use crate::model::{DeploymentRecord, DeploymentStatus};
use crate::notify::{Notification, NotificationKind, Notifier};

/// How long one notification may take before the rollout goes on without it.
pub(crate) const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// The facts every notification of `record` carries: the deployment, the versions
/// and the image (which a CDEvents receiver reads as the artifact; `from` tells a
/// first deployment from an upgrade).
fn facts(kind: NotificationKind, title: String, message: String, record: &DeploymentRecord) -> Notification {
    let mut n = Notification::new(kind, title, message)
        .app(record.app.clone())
        .environment(record.environment)
        .field("deployment", record.id.to_string())
        .field("strategy", record.strategy.to_string())
        .field("version", record.to.version.to_string())
        .field("image", record.to.image.to_string());
    if let Some(from) = &record.from {
        n = n.field("from", from.version.to_string());
    }
    n
}

/// The notification that a rollout of `record` started.
pub(crate) fn started(record: &DeploymentRecord) -> Notification {
    let from = record.from.as_ref().map_or_else(|| "nothing".to_owned(), |r| r.version.to_string());
    facts(
        NotificationKind::DeploymentStarted,
        format!("{} {} rollout started", record.app, record.to.version),
        format!("{} rollout from {from} to {}", record.strategy, record.to.version),
        record,
    )
}

/// The notification of how `report`'s rollout ended.
pub(crate) fn finished(report: &RolloutReport) -> Notification {
    let record = &report.record;
    let cause = report.cause.as_ref().map_or_else(String::new, ToString::to_string);
    let (kind, title, message) = match report.status {
        DeploymentStatus::Succeeded => (
            NotificationKind::DeploymentSucceeded,
            format!("{} {} is live", record.app, record.to.version),
            format!("{} rollout succeeded", record.strategy),
        ),
        DeploymentStatus::RolledBack => {
            (NotificationKind::RolledBack, format!("{} {} rolled back", record.app, record.to.version), cause)
        }
        _ => (NotificationKind::DeploymentFailed, format!("{} {} failed", record.app, record.to.version), cause),
    };
    let mut n = facts(kind, title, message, record);
    if let (Some(start), Some(end)) = (record.started_at, record.finished_at)
        && let Ok(took) = Duration::try_from(end.duration_since(start))
    {
        n = n.field("duration_seconds", format!("{:.3}", took.as_secs_f64()));
    }
    n
}

/// Delivers `notification`, logging (never returning) a failure or a timeout.
pub(crate) async fn deliver(notifier: &dyn Notifier, notification: &Notification) {
    match tokio::time::timeout(DELIVERY_DEADLINE, notifier.notify(notification)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(kind = ?notification.kind, error = %e, "a rollout notification was not delivered"),
        Err(_) => tracing::warn!(
            kind = ?notification.kind,
            "a rollout notification was not delivered within {} s",
            DELIVERY_DEADLINE.as_secs()
        ),
    }
}
