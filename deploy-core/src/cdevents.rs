//! [`Notification`]s as [CDEvents](https://cdevents.dev) (spec 0.5) in CloudEvents'
//! structured JSON, built with `cdevents-sdk` (feature `cdevents`); sent by the
//! [`WebhookNotifier`](crate::webhook::WebhookNotifier) in the
//! [`WebhookFormat::CdEvents`](crate::webhook::WebhookFormat::CdEvents) format.

use cdevents_sdk::latest::{
    pipelinerun_finished, pipelinerun_started, service_deployed, service_rolledback, service_upgraded,
};
use cdevents_sdk::{CDEvent, Subject};

use crate::notify::{Notification, NotificationKind};

/// Why a CDEvent could not be built from a notification.
pub type CdEventError = Box<dyn std::error::Error + Send + Sync>;

/// The CloudEvent (structured JSON) of `notification`.
pub fn cloud_event(notification: &Notification) -> Result<serde_json::Value, CdEventError> {
    let event: cloudevents::Event = cd_event(notification)?.try_into()?;
    Ok(serde_json::to_value(event)?)
}

/// The CDEvent of `notification`: see
/// [`WebhookFormat::CdEvents`](crate::webhook::WebhookFormat::CdEvents) for the mapping.
pub fn cd_event(notification: &Notification) -> Result<CDEvent, CdEventError> {
    let app = notification.app.as_ref().map_or_else(|| "unknown".to_owned(), ToString::to_string);
    let source = match &notification.app {
        Some(a) => format!("/deploy-rs/{}/{}", a.namespace, a.name),
        None => "/deploy-rs".to_owned(),
    };
    let field = |k: &str| notification.fields.get(k).cloned();
    let artifact = field("image").or_else(|| field("version")).unwrap_or_else(|| app.clone());
    let environment = notification.environment.map_or_else(|| "unknown".to_owned(), |e| e.to_string());
    let uri = || -> Result<cdevents_sdk::Uri, CdEventError> {
        Ok(format!("https://deploy-rs.invalid{source}").as_str().try_into()?)
    };
    let subject = match notification.kind {
        NotificationKind::DeploymentSucceeded if field("from").is_none() => Subject::from(service_deployed::Content {
            artifact_id: artifact.as_str().try_into()?,
            environment: service_deployed::ContentEnvironment { id: environment.as_str().try_into()?, source: None },
        }),
        NotificationKind::DeploymentSucceeded => Subject::from(service_upgraded::Content {
            artifact_id: artifact.as_str().try_into()?,
            environment: service_upgraded::ContentEnvironment { id: environment.as_str().try_into()?, source: None },
        }),
        NotificationKind::RolledBack => Subject::from(service_rolledback::Content {
            artifact_id: artifact.as_str().try_into()?,
            environment: service_rolledback::ContentEnvironment { id: environment.as_str().try_into()?, source: None },
        }),
        NotificationKind::DeploymentStarted => {
            Subject::from(pipelinerun_started::Content { pipeline_name: notification.title.clone(), uri: uri()? })
        }
        NotificationKind::DeploymentFailed | NotificationKind::PipelineFailed => {
            Subject::from(pipelinerun_finished::Content {
                errors: Some(notification.message.clone()),
                outcome: Some(pipelinerun_finished::ContentOutcome::Failure),
                pipeline_name: Some(notification.title.clone()),
                uri: Some(uri()?),
            })
        }
        NotificationKind::PipelineSucceeded => Subject::from(pipelinerun_finished::Content {
            errors: None,
            outcome: Some(pipelinerun_finished::ContentOutcome::Success),
            pipeline_name: Some(notification.title.clone()),
            uri: Some(uri()?),
        }),
    };
    let id = format!("{:032x}", crate::random::u128());
    let event = CDEvent::from(subject.with_id(app.as_str().try_into()?).with_source(source.as_str().try_into()?))
        .with_id(id.as_str().try_into()?)
        .with_source(source.as_str().try_into()?);
    Ok(event)
}
