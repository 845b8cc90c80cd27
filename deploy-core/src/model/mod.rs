//! The domain model: validated values, application specs, releases, tracks and
//! traffic splits, environment profiles and deployment records.
//!
//! Every type here is plain data with serde support, so specs can come from YAML or
//! JSON files, and every value that comes from outside the process is validated when
//! it is parsed or deserialized rather than when it is first used.

pub mod app;
pub mod duration;
pub mod image;
pub mod name;
pub mod percent;
pub mod profile;
pub mod quantity;
pub mod record;
pub mod release;
pub mod validation;

pub use app::{
    AppId, AppSpec, Autoscaling, ContainerSecurityContext, EnvVar, IntOrPercent, PodSecurityContext, Port, Probe,
    ProbeAction, Protocol, ResourceList, Resources, RollingUpdateParams,
};
pub use duration::HumanDuration;
pub use image::{Digest, ImageRef};
pub use name::{Name, Namespace};
pub use percent::Percent;
pub use profile::{Environment, EnvironmentProfile, RecoveryTargets};
pub use quantity::Quantity;
pub use record::{DeploymentId, DeploymentRecord, DeploymentStatus, LogLine, StepOutcome, StepRecord};
pub use release::{Release, Track, TrafficSplit, Version};
pub use validation::{ValidationError, ValidationErrors};
