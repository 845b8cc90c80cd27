//! The domain model: validated values, application specs, releases, tracks and
//! traffic splits, environment profiles and deployment records.
//!
//! Every type here is plain data with serde support, so specs can come from YAML or
//! JSON files, and every value that comes from outside the process is validated when
//! it is parsed or deserialized rather than when it is first used.
//!
//! Each type has one public path, `deploy_core::model::Type`: the files it is
//! written in are private.

pub(crate) mod analysis;
mod app;
mod cause;
mod duration;
mod image;
mod name;
mod percent;
mod profile;
mod quantity;
mod record;
mod release;
mod strategy_kind;
mod validation;
mod workload;

pub use app::{AppId, AppSpec};
pub use cause::{CauseKind, FailureCause};
pub use duration::HumanDuration;
pub use image::{Digest, ImageRef};
pub use name::{Name, Namespace};
pub use percent::Percent;
pub use profile::{Environment, EnvironmentProfile, RecoveryTargets};
pub use quantity::Quantity;
pub use record::{
    DeploymentId, DeploymentRecord, DeploymentStatus, InconclusiveDecision, LogLevel, LogLine, RecordKind, Recovery,
    StepOutcome, StepRecord,
};
pub use release::{Release, Track, TrafficSplit, Version};
pub use strategy_kind::StrategyKind;
pub use validation::{ValidationError, ValidationErrors};
pub use workload::{
    Autoscaling, ContainerSecurityContext, EnvSource, EnvVar, IntOrPercent, PodSecurityContext, Port, Probe,
    ProbeAction, Protocol, ResourceList, Resources, RollingUpdateParams,
};
