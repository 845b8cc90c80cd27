//! What a rollout asks of the API server, counted from the server's own audit log
//! (every request, with its verb, resource and user agent), for each strategy; and
//! how long after the last pod of a step became Ready the engine acts.
//!
//! `cargo test -p deploy-k8s --test cluster budget -- --nocapture` prints the table
//! that docs/kubernetes.md quotes.

use std::collections::BTreeMap;
use std::time::Duration;

use deploy_core::model::{DeploymentStatus, HumanDuration, Percent};
use deploy_core::plan::{PauseKind, Plan, Step};
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_k8s::Cluster;
use jiff::Timestamp;
use serde_json::Value;

use crate::engine::{NEW, REPLICAS, Route, Strat, World, engine_config};
use crate::support;

/// One request as the audit log records it.
#[derive(Debug, Clone)]
struct Logged {
    verb: String,
    resource: String,
    received: Timestamp,
}

/// The requests made with `user_agent`, in the order the server received them
/// (a watch counts once, when its response started).
fn requests_of(user_agent: &str) -> Vec<Logged> {
    let text = std::fs::read_to_string(support::audit_log()).expect("read the audit log");
    let mut out: Vec<Logged> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["userAgent"] == user_agent)
        .filter(|e| {
            let watch = e["verb"] == "watch";
            (watch && e["stage"] == "ResponseStarted") || (!watch && e["stage"] == "ResponseComplete")
        })
        .map(|e| {
            let object = &e["objectRef"];
            let mut resource = object["resource"].as_str().unwrap_or("-").to_owned();
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            Logged {
                verb: e["verb"].as_str().unwrap_or_default().to_owned(),
                resource,
                received: e["requestReceivedTimestamp"].as_str().unwrap_or_default().parse().expect("a timestamp"),
            }
        })
        .collect();
    out.sort_by_key(|r| r.received);
    out
}

/// When pods of `namespace` were written Ready (or otherwise) through
/// `pods/status`, by anyone (here: the node stand-in).
fn pod_status_writes(namespace: &str) -> Vec<Timestamp> {
    let text = std::fs::read_to_string(support::audit_log()).expect("read the audit log");
    let mut out: Vec<Timestamp> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| {
            e["stage"] == "ResponseComplete"
                && e["verb"] == "patch"
                && e["objectRef"]["resource"] == "pods"
                && e["objectRef"]["subresource"] == "status"
                && e["objectRef"]["namespace"] == namespace
        })
        .filter_map(|e| e["stageTimestamp"].as_str().and_then(|t| t.parse().ok()))
        .collect();
    out.sort();
    out
}

fn by_verb_and_resource(requests: &[Logged]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry(format!("{} {}", r.verb, r.resource)).or_default() += 1;
    }
    counts
}

fn pct(v: u8) -> Percent {
    Percent::new(v).expect("percent")
}

/// A canary of `weights`, each followed by a pause of `pause` (none when zero).
fn canary(weights: &[u8], pause: Duration) -> Plan {
    let steps = weights
        .iter()
        .flat_map(|w| {
            let pause = (!pause.is_zero()).then(|| Step::Pause(PauseKind::Duration(HumanDuration::new(pause))));
            std::iter::once(Step::SetWeight(pct(*w))).chain(pause)
        })
        .collect();
    Canary::with_steps(steps).scale_down_delay(HumanDuration::ZERO).plan(&PlanInput::new(REPLICAS))
}

struct Measured {
    requests: Vec<Logged>,
    steps: usize,
    namespace: String,
}

/// Runs one rollout with an engine whose requests carry `label` as user agent.
async fn measure(label: &str, strat: Strat, route: Route, plan: Option<Plan>, hold: Option<Duration>) -> Measured {
    let mut w = World::new(&format!("budget-{label}"), strat, route).await;
    if let Some(plan) = plan {
        w.plan = plan;
    }
    w.error_rate(0.001);
    let agent = format!("deploy-rs-budget/{label}-{}", std::process::id());
    let engine = w.engine_on(Cluster::new(support::client_as(&agent).await), engine_config("budget"));
    let node = w.s.node.as_ref().expect("the budget needs the node stand-in");
    if hold.is_some() {
        node.hold();
    }
    let run = engine.run(w.request(support::release(NEW)));
    let report = match hold {
        Some(hold) => {
            let release = async {
                tokio::time::sleep(hold).await;
                node.release();
            };
            tokio::join!(run, release).0
        }
        None => run.await,
    }
    .expect("a report");
    assert_eq!(report.status, DeploymentStatus::Succeeded, "{label}: {:?}", report.cause);
    let steps = w.plan.steps.len();
    let requests = requests_of(&agent);
    let namespace = w.s.namespace.clone();
    w.s.cleanup().await;
    Measured { requests, steps, namespace }
}

#[tokio::test]
async fn api_budget_per_strategy() {
    let rows = [
        ("rolling", Strat::Rolling, Route::Replicas, None),
        ("blue-green, Service selector", Strat::BlueGreen, Route::ServiceSelector, None),
        ("canary 25/50/75, Istio", Strat::Canary, Route::Istio, Some(canary(&[25, 50, 75], Duration::ZERO))),
        ("canary 25/50/75, Gateway API", Strat::Canary, Route::Gateway, Some(canary(&[25, 50, 75], Duration::ZERO))),
        ("canary 25/50/75, replicas", Strat::Canary, Route::Replicas, Some(canary(&[25, 50, 75], Duration::ZERO))),
    ];
    println!("| rollout | steps | requests | by verb and resource |");
    println!("|---|---|---|---|");
    for (i, (name, strat, route, plan)) in rows.into_iter().enumerate() {
        let m = measure(&format!("row{i}"), strat, route, plan, None).await;
        let detail: Vec<String> =
            by_verb_and_resource(&m.requests).into_iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("| {name} | {} | {} | {} |", m.steps, m.requests.len(), detail.join(", "));
        assert!(!m.requests.is_empty(), "{name}: the audit log has the engine's requests");
    }
}

#[tokio::test]
async fn requests_per_step_do_not_grow_with_waiting_and_the_engine_reacts_to_readiness() {
    // The same canary, once with the node answering at once and pauses of 1 s, and
    // once with the new pods held Pending for 3 s and pauses of 3 s.
    let quick =
        measure("quick", Strat::Canary, Route::Istio, Some(canary(&[25, 50], Duration::from_secs(1))), None).await;
    let held = measure(
        "held",
        Strat::Canary,
        Route::Istio,
        Some(canary(&[25, 50], Duration::from_secs(3))),
        Some(Duration::from_secs(3)),
    )
    .await;
    // Two costs grow with time, not with steps: Lease renewals (one per third of
    // the lease's TTL, as client-go's leader election does) and the reads of the
    // progress ConfigMap that pick up control requests from other processes (one per
    // `control_interval`, 5 s by default). A wait opens its watch only when the
    // list that starts it did not already show the track ready. Everything else is
    // per step.
    let per_step = |m: &Measured| {
        let mut counts = by_verb_and_resource(&m.requests);
        counts.retain(|k, _| !k.ends_with(" leases") && !k.starts_with("watch ") && k != "get configmaps");
        counts
    };
    let (q, h) = (per_step(&quick), per_step(&held));
    assert_eq!(q, h, "waiting 3 s for pods and pausing 3 s per step cost no extra request (no polling)");
    for m in [&quick, &held] {
        let count = |verb: &str| m.requests.iter().filter(|r| r.verb == verb).count();
        assert!(
            count("watch") <= count("list"),
            "at most one watch per wait: {:#?}",
            by_verb_and_resource(&m.requests)
        );
    }
    let count = |m: &Measured, verb: &str, resource: &str| {
        m.requests.iter().filter(|r| r.verb == verb && r.resource == resource).count()
    };
    println!(
        "time-based requests: lease renewals {} / {}, control reads of the progress ConfigMap {} / {} \
         (quick run / the run that waited 7 s longer; lease TTL 15 s, control interval 5 s)",
        count(&quick, "update", "leases"),
        count(&held, "update", "leases"),
        count(&quick, "get", "configmaps"),
        count(&held, "get", "configmaps"),
    );

    // Within the held window the engine sent nothing after opening its watches.
    let start = held.requests.first().expect("requests").received;
    let window_start = start.checked_add(jiff::SignedDuration::from_millis(1500)).expect("time");
    let window_end = start.checked_add(jiff::SignedDuration::from_millis(2900)).expect("time");
    let during: Vec<_> =
        held.requests.iter().filter(|r| r.received > window_start && r.received < window_end).collect();
    assert!(during.is_empty(), "requests while waiting: {during:#?}");

    // Reaction: the held pods were written Ready in one burst after the release;
    // from the last write of that burst to the engine's next request.
    let released = start.checked_add(jiff::SignedDuration::from_millis(2900)).expect("time");
    let writes: Vec<Timestamp> = pod_status_writes(&held.namespace).into_iter().filter(|t| *t > released).collect();
    let first = *writes.first().expect("the stand-in wrote the held pods' status");
    let burst_end = first.checked_add(jiff::SignedDuration::from_millis(200)).expect("time");
    let last_ready = writes.into_iter().filter(|t| *t <= burst_end).max().expect("a write");
    let next = held.requests.iter().find(|r| r.received > last_ready).expect("the engine acted after readiness");
    let reaction = next.received.duration_since(last_ready);
    println!(
        "canary 25/50 with Istio: {} requests in the quick run, the same in the slow one apart from lease renewals \
         and watches; \
         the engine's next request ({} {}) came {} ms after the last pod was written Ready \
         (the controllers' status updates and the watch event included)",
        quick.requests.len(),
        next.verb,
        next.resource,
        reaction.as_millis()
    );
    assert!(reaction < jiff::SignedDuration::from_secs(2), "the engine reacted within 2 s: {reaction:?}");
    let _ = held.steps;
}
