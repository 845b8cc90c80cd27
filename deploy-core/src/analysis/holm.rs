//! Holm's step-down correction across the metrics of one analysis: with several
//! metrics tested at α each, the chance that at least one fails a good canary grows
//! with their number; Holm keeps it at α, and rejects at least as much as
//! Bonferroni.

use super::{HolmAdjustment, Measurement, MeasurementOutcome};

/// Holm-adjusted p-values, in the order given: the i-th smallest p becomes
/// `max over j ≤ i of min(1, (k − j + 1) · p_(j))`.
///
/// ```
/// use deploy_core::analysis::holm_adjust;
/// let adjusted = holm_adjust(&[0.01, 0.04, 0.03]);
/// // sorted 0.01, 0.03, 0.04 → 0.03, 0.06, 0.06
/// assert!((adjusted[0] - 0.03).abs() < 1e-12);
/// assert!((adjusted[1] - 0.06).abs() < 1e-12);
/// assert!((adjusted[2] - 0.06).abs() < 1e-12);
/// ```
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let k = p_values.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut adjusted = vec![1.0; k];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "a handful of metrics")]
        let factor = (k - rank) as f64;
        running = running.max((factor * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Corrects one round's measurements: every measurement whose evidence has a
/// p-value and an α joins the family; when it has two members or more, a failure
/// stands only if its Holm-adjusted p-value is at most its α, and otherwise
/// becomes a success that says why. Each member's evidence records the
/// adjustment.
pub(crate) fn correct_round(round: &mut [&mut Measurement]) {
    let family: Vec<(usize, f64, f64)> = round
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let stats = &m.evidence.as_ref()?.statistics;
            Some((i, stats.p_value?, stats.alpha?))
        })
        .collect();
    if family.len() < 2 {
        return;
    }
    let adjusted = holm_adjust(&family.iter().map(|(_, p, _)| *p).collect::<Vec<_>>());
    for ((i, _, alpha), adjusted_p) in family.iter().zip(adjusted) {
        let m = &mut *round[*i];
        let rejected = adjusted_p <= *alpha;
        if m.outcome == MeasurementOutcome::Failed && !rejected {
            m.outcome = MeasurementOutcome::Successful;
            m.decisive = false;
            m.detail.push_str(&format!(
                " (not significant after Holm's correction across {} tests: adjusted p = {adjusted_p:.4} > {alpha})",
                family.len()
            ));
        }
        if let Some(evidence) = &mut m.evidence {
            evidence.holm = Some(HolmAdjustment { family: family.len(), adjusted_p, rejected });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_matches_the_textbook_example() {
        // p = 0.01, 0.02, 0.03, 0.04 with k = 4: 0.04, 0.06, 0.06, 0.06.
        let a = holm_adjust(&[0.04, 0.01, 0.03, 0.02]);
        let expected = [0.06, 0.04, 0.06, 0.06];
        for (got, want) in a.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{a:?}");
        }
        assert_eq!(holm_adjust(&[0.9, 0.8]), [1.0, 1.0]);
        assert!(holm_adjust(&[]).is_empty());
    }
}
