//! HorizontalPodAutoscaler (autoscaling/v2) and PodDisruptionBudget.

use deploy_core::model::{AppSpec, Quantity, Track};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
    PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::manifest::deployment::to_i32;

/// One scaling policy: change by `value` pods or percent per `period_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScalingPolicy {
    /// At most this percentage of the current replicas per period.
    Percent {
        /// The percentage.
        value: i32,
        /// The period in seconds.
        period_seconds: i32,
    },
    /// At most this many pods per period.
    Pods {
        /// The pod count.
        value: i32,
        /// The period in seconds.
        period_seconds: i32,
    },
}

/// How fast one direction scales: a stabilisation window, the policies and which of
/// them wins (`Max` or `Min`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScalingRules {
    /// Seconds of past recommendations considered before scaling.
    pub stabilization_window_seconds: i32,
    /// The policies.
    pub policies: Vec<ScalingPolicy>,
    /// `Max` (the fastest policy wins) or `Min` (the slowest).
    pub select_policy: String,
}

/// A custom per-pod metric (from a metrics adapter) and its target average.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodsMetric {
    /// The metric's name, such as `http_requests_per_second`.
    pub name: String,
    /// The target average over the pods.
    pub target_average: Quantity,
}

impl PodsMetric {
    /// A custom pods metric.
    pub fn new(name: impl Into<String>, target_average: Quantity) -> Self {
        Self { name: name.into(), target_average }
    }
}

/// Settings of an HPA beyond [`AppSpec::autoscaling`].
///
/// The default behaviour is the seed's: scale up by 50 % or 2 pods per 60 s,
/// whichever is more (`Max`), with no stabilisation; scale down by 10 % or 1 pod per
/// 60 s, whichever is less (`Min`), after a 300 s stabilisation window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HpaOptions {
    /// The Deployment scaled; `None` is the app's name (or the track's workload,
    /// with [`HpaOptions::track`]).
    pub target: Option<String>,
    /// The track whose Deployment `{app}-{track}` this HPA scales; it is named
    /// after that Deployment and labelled with the track.
    pub track: Option<Track>,
    /// Scale-up rules.
    pub scale_up: ScalingRules,
    /// Scale-down rules.
    pub scale_down: ScalingRules,
    /// Custom per-pod metrics.
    pub pods_metrics: Vec<PodsMetric>,
}

impl Default for HpaOptions {
    fn default() -> Self {
        Self {
            target: None,
            track: None,
            scale_up: ScalingRules {
                stabilization_window_seconds: 0,
                policies: vec![
                    ScalingPolicy::Percent { value: 50, period_seconds: 60 },
                    ScalingPolicy::Pods { value: 2, period_seconds: 60 },
                ],
                select_policy: "Max".to_owned(),
            },
            scale_down: ScalingRules {
                stabilization_window_seconds: 300,
                policies: vec![
                    ScalingPolicy::Percent { value: 10, period_seconds: 60 },
                    ScalingPolicy::Pods { value: 1, period_seconds: 60 },
                ],
                select_policy: "Min".to_owned(),
            },
            pods_metrics: Vec::new(),
        }
    }
}

impl HpaOptions {
    /// Scales the named Deployment.
    #[must_use]
    pub fn target(mut self, deployment: impl Into<String>) -> Self {
        self.target = Some(deployment.into());
        self
    }

    /// Scales the Deployment of `track` (`{app}-{track}`), and is named after it.
    #[must_use]
    pub fn track(mut self, track: Track) -> Self {
        self.track = Some(track);
        self
    }

    /// Adds a custom pods metric.
    #[must_use]
    pub fn pods_metric(mut self, metric: PodsMetric) -> Self {
        self.pods_metrics.push(metric);
        self
    }
}

/// Builds the HPA of `spec`, or `None` when the spec does not autoscale.
/// CPU and memory targets are average utilisation of the requests.
pub fn horizontal_pod_autoscaler(spec: &AppSpec, options: &HpaOptions) -> Option<HorizontalPodAutoscaler> {
    let scaling = spec.autoscaling.as_ref()?;
    let mut metrics = Vec::new();
    for (resource, target) in [("cpu", scaling.target_cpu), ("memory", scaling.target_memory)] {
        if let Some(target) = target {
            metrics.push(MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: resource.to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(i32::from(target.value())),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            });
        }
    }
    for metric in &options.pods_metrics {
        metrics.push(MetricSpec {
            type_: "Pods".to_owned(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier { name: metric.name.clone(), selector: None },
                target: MetricTarget {
                    type_: "AverageValue".to_owned(),
                    average_value: Some(KubeQuantity(metric.target_average.as_str().to_owned())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    let app = spec.id();
    let name = options.track.map_or_else(|| app.name.to_string(), |t| labels::workload_name(&app, t));
    Some(HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(app.namespace.to_string()),
            labels: Some(labels::pod_labels(&app, options.track, None)),
            ..ObjectMeta::default()
        },
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: options.target.clone().unwrap_or(name),
            },
            min_replicas: Some(to_i32(scaling.min_replicas)),
            max_replicas: to_i32(scaling.max_replicas),
            metrics: Some(metrics),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(rules(&options.scale_up)),
                scale_down: Some(rules(&options.scale_down)),
            }),
        },
        status: None,
    })
}

fn rules(rules: &ScalingRules) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(rules.stabilization_window_seconds),
        select_policy: Some(rules.select_policy.clone()),
        policies: Some(
            rules
                .policies
                .iter()
                .map(|p| match *p {
                    ScalingPolicy::Percent { value, period_seconds } => {
                        HPAScalingPolicy { type_: "Percent".to_owned(), value, period_seconds }
                    }
                    ScalingPolicy::Pods { value, period_seconds } => {
                        HPAScalingPolicy { type_: "Pods".to_owned(), value, period_seconds }
                    }
                })
                .collect(),
        ),
        tolerance: None,
    }
}

/// How many pods a voluntary disruption (a node drain) may take down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisruptionBudget {
    /// At least this many (or this percentage) stay available.
    MinAvailable(IntOrString),
    /// At most this many (or this percentage) are down at once.
    MaxUnavailable(IntOrString),
}

impl Default for DisruptionBudget {
    fn default() -> Self {
        Self::MaxUnavailable(IntOrString::Int(1))
    }
}

/// Builds the PodDisruptionBudget of every pod of `spec` (all tracks).
pub fn pod_disruption_budget(spec: &AppSpec, budget: &DisruptionBudget) -> PodDisruptionBudget {
    let app = spec.id();
    let (min_available, max_unavailable) = match budget {
        DisruptionBudget::MinAvailable(v) => (Some(v.clone()), None),
        DisruptionBudget::MaxUnavailable(v) => (None, Some(v.clone())),
    };
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(app.name.to_string()),
            namespace: Some(app.namespace.to_string()),
            labels: Some(labels::pod_labels(&app, None, None)),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(labels::app_selector(&app)),
                ..LabelSelector::default()
            }),
            min_available,
            max_unavailable,
            unhealthy_pod_eviction_policy: None,
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use deploy_core::model::{Environment, EnvironmentProfile, Percent};

    fn policy(r: &HPAScalingRules, i: usize) -> (&str, i32, i32) {
        let p = &r.policies.as_ref().unwrap()[i];
        (p.type_.as_str(), p.value, p.period_seconds)
    }

    #[test]
    fn hpa_has_the_seed_behaviour_and_every_metric() {
        let mut spec = EnvironmentProfile::preset(Environment::Production).apply_to(fixtures::spec());
        spec.autoscaling.as_mut().unwrap().target_memory = Some(Percent::new(80).unwrap());
        let options = HpaOptions::default()
            .target("web-stable")
            .pods_metric(PodsMetric::new("http_requests_per_second", "100".parse().unwrap()));
        let hpa = horizontal_pod_autoscaler(&spec, &options).unwrap();
        let s = hpa.spec;
        assert_eq!(s.scale_target_ref.name, "web-stable");
        assert_eq!(s.scale_target_ref.kind, "Deployment");
        assert_eq!((s.min_replicas, s.max_replicas), (Some(3), 10));

        let metrics = s.metrics.unwrap();
        assert_eq!(metrics.len(), 3);
        let cpu = metrics[0].resource.as_ref().unwrap();
        assert_eq!((cpu.name.as_str(), cpu.target.type_.as_str()), ("cpu", "Utilization"));
        assert_eq!(cpu.target.average_utilization, Some(70));
        let memory = metrics[1].resource.as_ref().unwrap();
        assert_eq!((memory.name.as_str(), memory.target.average_utilization), ("memory", Some(80)));
        let pods = metrics[2].pods.as_ref().unwrap();
        assert_eq!(metrics[2].type_, "Pods");
        assert_eq!(pods.metric.name, "http_requests_per_second");
        assert_eq!(pods.target.average_value, Some(KubeQuantity("100".into())));

        let behavior = s.behavior.unwrap();
        let up = behavior.scale_up.unwrap();
        assert_eq!(up.select_policy.as_deref(), Some("Max"));
        assert_eq!(up.stabilization_window_seconds, Some(0));
        assert_eq!(policy(&up, 0), ("Percent", 50, 60));
        assert_eq!(policy(&up, 1), ("Pods", 2, 60));
        let down = behavior.scale_down.unwrap();
        assert_eq!(down.select_policy.as_deref(), Some("Min"));
        assert_eq!(down.stabilization_window_seconds, Some(300));
        assert_eq!(policy(&down, 0), ("Percent", 10, 60));
        assert_eq!(policy(&down, 1), ("Pods", 1, 60));
    }

    #[test]
    fn no_autoscaling_no_hpa() {
        assert!(horizontal_pod_autoscaler(&fixtures::spec(), &HpaOptions::default()).is_none());
    }

    #[test]
    fn pdb_selects_every_track_of_the_app() {
        let pdb = pod_disruption_budget(
            &fixtures::spec(),
            &DisruptionBudget::MinAvailable(IntOrString::String("50%".into())),
        );
        let s = pdb.spec.unwrap();
        assert_eq!(s.min_available, Some(IntOrString::String("50%".into())));
        assert_eq!(s.max_unavailable, None);
        assert_eq!(s.selector.unwrap().match_labels.unwrap(), labels::app_selector(&fixtures::app_id()));
        let default = pod_disruption_budget(&fixtures::spec(), &DisruptionBudget::default());
        assert_eq!(default.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }
}
