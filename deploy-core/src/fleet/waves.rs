//! How a fleet's targets are grouped into waves, what ends each wave, and what a
//! failure rolls back: the policies of a [`FleetPlan`](super::FleetPlan).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Percent, ValidationError};

/// How the targets are grouped into waves, in order.
///
/// ```
/// use deploy_core::fleet::{WavePolicy, WaveSize};
/// use deploy_core::model::Percent;
/// // "1, then 10 %, then the rest" of 50 targets: 1, 5, 44.
/// let policy = WavePolicy::Progressive(vec![WaveSize::Count(1), WaveSize::Percent(Percent::new(10).unwrap()), WaveSize::Rest]);
/// let names: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
/// let waves = policy.waves(&names, &|_: &str, _: &str| None).unwrap();
/// assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [1, 5, 44]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WavePolicy {
    /// Explicit lists of target names, one per wave.
    Explicit(Vec<Vec<String>>),
    /// One wave per value of the label `key`, in the order of `values` (for
    /// example `region`: `eu-west`, `us-east`); every target must carry one of them.
    ByLabel {
        /// The label's key.
        key: String,
        /// Its values, one wave each, in order.
        values: Vec<String>,
    },
    /// Waves by size, in the targets' order: `1, then 10 %, then the rest`.
    Progressive(Vec<WaveSize>),
}

/// The size of one wave of a [`WavePolicy::Progressive`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WaveSize {
    /// This many targets (fewer when fewer are left).
    Count(usize),
    /// This share of all the fleet's targets, rounded up, at least one.
    Percent(Percent),
    /// Every target left; must be the last size.
    Rest,
}

impl WavePolicy {
    /// The waves, as lists of target names, for `targets` (in the plan's order);
    /// `label(target, key)` reads a target's label. Every target is in exactly one
    /// wave and no wave is empty, or the problems are returned.
    pub fn waves(
        &self,
        targets: &[String],
        label: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Result<Vec<Vec<String>>, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let waves: Vec<Vec<String>> = match self {
            Self::Explicit(lists) => lists.clone(),
            Self::ByLabel { key, values } => {
                let mut by_value: BTreeMap<&str, Vec<String>> = BTreeMap::new();
                for t in targets {
                    match label(t, key) {
                        Some(v) if values.contains(&v) => {
                            let slot = values.iter().find(|x| **x == v).map_or("", String::as_str);
                            by_value.entry(slot).or_default().push(t.clone());
                        }
                        Some(v) => errors.push(ValidationError::new(
                            format!("target {t} label {key}"),
                            v,
                            "is not one of the wave policy's values",
                        )),
                        None => errors.push(ValidationError::new(
                            format!("target {t}"),
                            key.clone(),
                            "has no such label, which the wave policy groups by",
                        )),
                    }
                }
                values.iter().map(|v| by_value.remove(v.as_str()).unwrap_or_default()).collect()
            }
            Self::Progressive(sizes) => {
                let total = targets.len();
                let mut left = targets.iter().cloned();
                let mut out = Vec::new();
                for (i, size) in sizes.iter().enumerate() {
                    let n = match size {
                        WaveSize::Count(n) => *n,
                        WaveSize::Percent(p) => (total * usize::from(p.value())).div_ceil(100).max(1),
                        WaveSize::Rest => {
                            if i + 1 != sizes.len() {
                                errors.push(ValidationError::new(
                                    format!("wave {}", i + 1),
                                    "rest",
                                    "only the last wave may take the rest",
                                ));
                            }
                            usize::MAX
                        }
                    };
                    out.push(left.by_ref().take(n).collect::<Vec<_>>());
                }
                let rest: Vec<String> = left.collect();
                if !rest.is_empty() {
                    errors.push(ValidationError::new(
                        "waves",
                        rest.join(","),
                        "these targets are in no wave; end the sizes with `rest`",
                    ));
                }
                out
            }
        };
        let mut seen = BTreeMap::new();
        for (i, wave) in waves.iter().enumerate() {
            if wave.is_empty() {
                errors.push(ValidationError::new(format!("wave {}", i + 1), "", "has no target"));
            }
            for t in wave {
                if !targets.contains(t) {
                    errors.push(ValidationError::new(
                        format!("wave {}", i + 1),
                        t.clone(),
                        "is not a target of the fleet",
                    ));
                } else if let Some(first) = seen.insert(t.clone(), i) {
                    errors.push(ValidationError::new(
                        format!("wave {}", i + 1),
                        t.clone(),
                        format!("is already in wave {}", first + 1),
                    ));
                }
            }
        }
        for t in targets {
            if !seen.contains_key(t) && !matches!(self, Self::Progressive(_)) {
                errors.push(ValidationError::new("waves", t.clone(), "this target is in no wave"));
            }
        }
        if errors.is_empty() { Ok(waves) } else { Err(errors) }
    }
}

/// What must hold after a wave (and its bake time) before the next wave starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "gate")]
#[non_exhaustive]
pub enum Gate {
    /// Nothing beyond the wave's own rollouts and the bake time.
    Open,
    /// A person's approval: the fleet waits until promoted
    /// ([`FleetControl::promote`](super::FleetControl::promote)).
    Approval,
    /// A check across the wave's targets by the [`WaveCheck`](super::WaveCheck)
    /// registered under this name with the driver (an analysis of their metrics,
    /// an alert query); a failed check stops the line.
    Check {
        /// The registered check's name.
        name: String,
    },
    /// Only continue inside this daily window, UTC hours `[from, to)`; the fleet
    /// waits for it (a window that wraps midnight has `from > to`).
    Window {
        /// First hour (0-23) of the window, UTC.
        from_hour: u8,
        /// Hour (0-24) the window ends, UTC.
        to_hour: u8,
    },
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("open"),
            Self::Approval => f.write_str("approval"),
            Self::Check { name } => write!(f, "check {name}"),
            Self::Window { from_hour, to_hour } => write!(f, "window {from_hour:02}:00-{to_hour:02}:00 UTC"),
        }
    }
}

impl Gate {
    /// Whether `hour` (UTC, 0-23) is inside a window gate; other gates say `true`.
    pub(crate) fn window_admits(&self, hour: u8) -> bool {
        match *self {
            Self::Window { from_hour, to_hour } if from_hour <= to_hour => hour >= from_hour && hour < to_hour,
            Self::Window { from_hour, to_hour } => hour >= from_hour || hour < to_hour,
            _ => true,
        }
    }
}

/// What one wave is: its targets, then a bake time, then a gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaveSpec {
    /// The targets' names.
    pub targets: Vec<String>,
    /// How long to watch the wave after its last rollout before its gate.
    #[serde(with = "humantime_secs")]
    pub bake: Duration,
    /// What must hold before the next wave.
    pub gate: Gate,
}

/// What a failure rolls back besides the failed target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RollbackPolicy {
    /// The failed wave's targets (running ones are aborted, finished ones put
    /// back on the previous release); earlier waves keep the new release.
    #[default]
    FailedWave,
    /// Every target that changed, the failed wave's and every earlier wave's, is
    /// put back on the previous release, latest wave first.
    Fleet,
}

/// Durations as whole seconds plus nanoseconds, so that a plan reads back exactly.
mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        d.as_secs_f64().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn progressive_covers_every_target_once() {
        let p = WavePolicy::Progressive(vec![
            WaveSize::Count(1),
            WaveSize::Percent(Percent::new(10).unwrap()),
            WaveSize::Rest,
        ]);
        let waves = p.waves(&names(50), &|_, _| None).unwrap();
        assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [1, 5, 44]);
        assert_eq!(waves.concat(), names(50));
    }

    #[test]
    fn progressive_without_rest_names_the_left_targets() {
        let p = WavePolicy::Progressive(vec![WaveSize::Count(1)]);
        let e = p.waves(&names(3), &|_, _| None).unwrap_err();
        assert!(e[0].to_string().contains("t1,t2"), "{}", e[0]);
    }

    #[test]
    fn explicit_rejects_duplicates_unknowns_and_missing() {
        let p = WavePolicy::Explicit(vec![vec!["t0".into(), "x".into()], vec!["t0".into()], vec![]]);
        let e = p.waves(&names(2), &|_, _| None).unwrap_err();
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("\"x\"") && t.contains("not a target")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("already in wave 1")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("has no target")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("\"t1\"") && t.contains("in no wave")), "{text:?}");
    }

    #[test]
    fn by_label_orders_waves_by_value() {
        let p = WavePolicy::ByLabel { key: "region".into(), values: vec!["eu".into(), "us".into()] };
        let label = |t: &str, _: &str| Some(if t == "t1" { "eu".to_owned() } else { "us".to_owned() });
        assert_eq!(p.waves(&names(3), &label).unwrap(), vec![vec!["t1".to_owned()], vec!["t0".into(), "t2".into()]]);
        let missing = |_: &str, _: &str| None;
        assert!(p.waves(&names(1), &missing).unwrap_err()[0].to_string().contains("has no such label"));
    }

    #[test]
    fn window_wraps_midnight() {
        let g = Gate::Window { from_hour: 22, to_hour: 2 };
        assert!(g.window_admits(23) && g.window_admits(1) && !g.window_admits(12));
        let g = Gate::Window { from_hour: 9, to_hour: 17 };
        assert!(g.window_admits(9) && !g.window_admits(17));
    }
}
