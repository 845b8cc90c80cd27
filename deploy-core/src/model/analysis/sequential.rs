//! The stored parameters of an anytime-valid sequential test: [`SequentialSpec`].

use serde::{Deserialize, Serialize};

use super::Direction;
use crate::model::HumanDuration;

/// Which data the sequential test is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SequentialKind {
    /// Values of a continuous metric (a latency), from range queries.
    Continuous,
    /// Errors out of requests: the check's query counts errors in the last
    /// interval, `total_query` counts requests, each per track.
    Counts {
        /// The query for the number of requests.
        total_query: String,
    },
    /// Requests by category (2xx, 4xx, 5xx): the check's query counts requests in
    /// the last interval, and each category's query counts that category's, per
    /// track. The candidate is worse when its share of a category's events is
    /// above (by the category's direction) its share of requests.
    Categories {
        /// The categories, each with its query and the deviation that counts
        /// against the candidate.
        categories: Vec<CountCategory>,
    },
}

/// One category of a [`SequentialKind::Categories`] test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CountCategory {
    /// The category's name (`5xx`); its metric is queried as `<check>-<name>`.
    pub name: String,
    /// The query that counts the category's requests in the last interval.
    pub query: String,
    /// Which deviation of the candidate's rate counts against it: `Increase` for
    /// errors, `Decrease` for successes.
    #[serde(default)]
    pub direction: Direction,
}

/// A sequential judge's parameters ([`JudgeSpec::Sequential`](super::JudgeSpec::Sequential)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SequentialSpec {
    /// Continuous values or counts.
    #[serde(flatten)]
    pub kind: SequentialKind,
    /// Which deviation counts against the candidate.
    #[serde(default)]
    pub direction: Direction,
    /// The chance of failing a good canary, over all looks; 0.02 by default.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The window each look adds (continuous); set it to the analysis interval.
    pub lookback: HumanDuration,
    /// The time between two values in the window (continuous).
    pub step: HumanDuration,
    /// The mixing scale: τ in baseline standard deviations (continuous, 0.5 by
    /// default), or the Beta prior's `a` (counts and categories, 1 by default:
    /// uniform).
    #[serde(default = "default_mixing")]
    pub mixing: f64,
    /// The largest difference that is harmless (continuous: in the metric's unit;
    /// counts: in θ, the candidate's share of the errors); 0 by default. Once the
    /// confidence sequence excludes every regression larger than this, the
    /// success is decisive and the analysis stops measuring the check.
    #[serde(default)]
    pub margin: f64,
    /// The fewest values per side before judging (continuous); 10 by default.
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
}

pub(crate) fn default_alpha() -> f64 {
    0.02
}

pub(crate) fn default_mixing() -> f64 {
    0.5
}

pub(crate) fn default_min_samples() -> u32 {
    10
}
