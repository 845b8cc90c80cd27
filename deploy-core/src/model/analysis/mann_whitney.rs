//! The stored types of the Mann-Whitney test: [`Alternative`], [`PValueMethod`],
//! [`ShiftEstimate`].

use serde::{Deserialize, Serialize};

/// Which alternative the p-value is for: whether the candidate is larger, smaller,
/// or either, than the baseline (SciPy's `alternative`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Alternative {
    /// The candidate differs, in either direction.
    #[default]
    TwoSided,
    /// The candidate is stochastically larger (SciPy's `"greater"`).
    Greater,
    /// The candidate is stochastically smaller (SciPy's `"less"`).
    Less,
}

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PValueMethod {
    /// From the exact distribution of U.
    Exact,
    /// From the normal approximation with tie and continuity corrections.
    Normal,
}

/// The Hodges-Lehmann estimate of the shift from baseline to candidate (the
/// median of all candidate − baseline differences) and its confidence interval
/// by inverting the Mann-Whitney test, as R's `wilcox.test(conf.int = TRUE)` does
/// for exact samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShiftEstimate {
    /// The median of the pairwise differences.
    pub estimate: f64,
    /// The lower bound of the interval.
    pub lower: f64,
    /// The upper bound of the interval.
    pub upper: f64,
    /// The confidence level asked for.
    pub confidence: f64,
}
