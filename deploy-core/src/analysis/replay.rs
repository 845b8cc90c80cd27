//! Re-checking a deployment record offline: [`replay`] recomputes every verdict
//! from the evidence the record keeps and reports each one that differs.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::kayenta::MannWhitneyJudge;
use super::{
    CheckKind, CompareJudge, Evidence, JudgeSpec, Measurement, MeasurementOutcome, MultipleTesting, ThresholdJudge,
    Verdict, holm,
};
use crate::model::DeploymentRecord;

/// A verdict that came out differently when recomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayDifference {
    /// The analysis' name.
    pub analysis: String,
    /// Its step, from 0.
    pub step: usize,
    /// The check.
    pub check: String,
    /// The round, from 0.
    pub round: u32,
    /// The outcome the record holds.
    pub recorded: MeasurementOutcome,
    /// The outcome recomputed from the evidence.
    pub replayed: MeasurementOutcome,
    /// What differs, in a sentence.
    pub what: String,
}

/// What [`replay`] found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Verdicts recomputed.
    pub checked: usize,
    /// Verdicts whose judge cannot be recomputed offline (a registered custom
    /// judge) or that kept no evidence (records written before evidence was kept).
    pub not_replayable: usize,
    /// Every verdict that differs.
    pub differences: Vec<ReplayDifference>,
}

impl ReplayReport {
    /// Whether every recomputed verdict matched.
    pub fn reproduced(&self) -> bool {
        self.differences.is_empty()
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} verdicts recomputed, {} differ, {} not replayable",
            self.checked,
            self.differences.len(),
            self.not_replayable
        )
    }
}

/// The verdict a built-in judge reaches on the evidence's values; `None` for a
/// custom judge, which only its registry knows.
pub fn recompute(evidence: &Evidence) -> Option<Verdict> {
    let (candidate, baseline) = (&evidence.candidate, &evidence.baseline);
    match &evidence.judge {
        JudgeSpec::Threshold { min, max } => Some(match candidate.first() {
            Some(v) => ThresholdJudge::new(*min, *max).judge_single(*v),
            None => Verdict::no_data("no value"),
        }),
        JudgeSpec::Compare { direction, max_ratio, max_difference } => Some(
            CompareJudge::new(*direction, *max_ratio, *max_difference)
                .compare_values(candidate.first().copied(), baseline.first().copied()),
        ),
        JudgeSpec::MannWhitney { lookback, step, .. } => super::judge::mann_whitney_classifier(&evidence.judge)
            .map(|classifier| MannWhitneyJudge::new(classifier, *lookback, *step).judge_samples(candidate, baseline)),
        JudgeSpec::Sequential(spec) => Some(spec.judge_values(candidate, baseline)),
        JudgeSpec::CanaryScore(spec) => {
            let samples: Vec<(&[f64], &[f64])> =
                evidence.metrics.iter().map(|m| (m.candidate.as_slice(), m.baseline.as_slice())).collect();
            Some(spec.judge_samples(&samples))
        }
        JudgeSpec::Custom { .. } => None,
    }
}

/// Recomputes every measurement's verdict in `record` from its evidence (with the
/// analysis' multiple-testing correction, round by round) and reports each that
/// differs from what the record says: its outcome, whether it was decisive (ended
/// the analysis or settled its check early), or its p-value beyond 1e-9.
///
/// ```
/// use deploy_core::analysis::replay;
/// # use deploy_core::model::*;
/// # let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
/// # let to = Release::new(Version::new("2.0.0").unwrap(), ImageRef::parse("web:2.0.0").unwrap());
/// let record = DeploymentRecord::new(app, Environment::Staging, None, to, deploy_core::model::StrategyKind::Canary);
/// let report = replay(&record);
/// assert!(report.reproduced());
/// assert_eq!(report.checked, 0);
/// ```
pub fn replay(record: &DeploymentRecord) -> ReplayReport {
    let mut report = ReplayReport::default();
    for analysis in &record.analyses {
        let measurements = &analysis.report.measurements;
        let rounds: std::collections::BTreeSet<u32> = measurements.iter().map(|m| m.round).collect();
        for round in rounds {
            let recorded: Vec<&Measurement> =
                measurements.iter().filter(|m| m.round == round && m.kind == CheckKind::Metric).collect();
            let mut replayed: Vec<Measurement> = Vec::new();
            let mut pairs: Vec<(&Measurement, usize)> = Vec::new();
            for m in &recorded {
                if m.outcome == MeasurementOutcome::Error {
                    continue; // no verdict: the query failed
                }
                let Some(verdict) = m.evidence.as_deref().and_then(recompute) else {
                    report.not_replayable += 1;
                    continue;
                };
                let mut again = (*m).clone();
                again.outcome = verdict.outcome;
                again.decisive = verdict.decisive
                    && matches!(verdict.outcome, MeasurementOutcome::Successful | MeasurementOutcome::Failed);
                again.evidence = verdict.evidence.map(|mut e| {
                    e.query = m.evidence.as_ref().map(|r| r.query.clone()).unwrap_or_default();
                    Box::new(e)
                });
                pairs.push((m, replayed.len()));
                replayed.push(again);
            }
            if analysis.spec.multiple_testing == MultipleTesting::Holm {
                let mut refs: Vec<&mut Measurement> = replayed.iter_mut().collect();
                holm::correct_round(&mut refs);
            }
            for (m, i) in pairs {
                report.checked += 1;
                let again = &replayed[i];
                let p = |x: &Measurement| x.evidence.as_ref().and_then(|e| e.statistics.p_value);
                let score =
                    |x: &Measurement| x.evidence.as_ref().and_then(|e| e.statistics.score.as_ref()).map(|s| s.score);
                let what = if again.outcome != m.outcome {
                    Some(format!("recorded {} but the evidence gives {}", m.outcome, again.outcome))
                } else if again.decisive != m.decisive {
                    let says = |d: bool| if d { "decisive" } else { "not decisive" };
                    Some(format!("recorded {} but the evidence gives {}", says(m.decisive), says(again.decisive)))
                } else {
                    match (p(m), p(again)) {
                        (Some(a), Some(b)) if (a - b).abs() > 1e-9 * a.abs().max(1e-300) => {
                            Some(format!("recorded p = {a} but the evidence gives p = {b}"))
                        }
                        (Some(_), None) | (None, Some(_)) => Some("p-value recorded on one side only".to_owned()),
                        _ => match (score(m), score(again)) {
                            (Some(a), Some(b)) if (a - b).abs() > 1e-9 => {
                                Some(format!("recorded score {a} but the evidence gives {b}"))
                            }
                            (Some(_), None) | (None, Some(_)) => Some("score recorded on one side only".to_owned()),
                            _ => None,
                        },
                    }
                };
                if let Some(what) = what {
                    report.differences.push(ReplayDifference {
                        analysis: analysis.report.name.clone(),
                        step: analysis.step,
                        check: m.check.clone(),
                        round,
                        recorded: m.outcome,
                        replayed: again.outcome,
                        what,
                    });
                }
            }
        }
    }
    report
}
