//! The analysis types a [`DeploymentRecord`](super::DeploymentRecord) stores:
//! specs, judges' parameters, measurements, reports and their evidence.
//!
//! They are defined here, in the model, so that the record does not depend on the
//! [`analysis`](crate::analysis) module that computes them (which depends on the
//! model): the model stays a leaf. Their one public path is in
//! [`analysis`](crate::analysis) (`deploy_core::analysis::AnalysisSpec`,
//! `deploy_core::analysis::kayenta::ScoreSpec`, ...), which re-exports them; their
//! methods (constructors, validation, display, judging) are written there too, next
//! to the algorithms.

mod evidence;
pub(crate) mod kayenta;
pub(crate) mod mann_whitney;
mod policy;
mod report;
pub(crate) mod sequential;
mod spec;

pub use evidence::{AnalysisRecord, CategoryStatistics, Evidence, HolmAdjustment, Statistics};
pub use policy::InconclusivePolicy;
pub use report::{AnalysisOutcome, AnalysisReport, CheckKind, Measurement, MeasurementOutcome};
pub use spec::{AnalysisSpec, Direction, JudgeSpec, MetricCheck, MultipleTesting};
pub(crate) use spec::{
    default_confidence, default_consecutive_error_limit, default_effect_size, default_power_shift, default_tolerance,
};
