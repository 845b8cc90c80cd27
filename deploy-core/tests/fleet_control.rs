//! Control of a fleet from another process (pause, resume, promote the gate,
//! abort), the fleet lease against a second driver, and gates that check a
//! wave, on the test kit. Each control acts while the fleet provably waits
//! (a target held not-ready by hand, a gate), never racing it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code fails the test on any error")]

use std::sync::Arc;
use std::time::Duration;

use deploy_core::async_trait;
use deploy_core::engine::{EngineConfig, RolloutEngine};
use deploy_core::fleet::{
    FleetConfig, FleetControl, FleetDriver, FleetError, FleetEvent, FleetPlan, FleetStatus, FleetTarget, Gate,
    RollbackPolicy, TargetRecord, WaveCheck, WavePolicy,
};
use deploy_core::model::{AppId, AppSpec, DeploymentStatus, Name, Namespace, Percent, Release, Track};
use deploy_core::plan::Step;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, TestKit};
use tokio::sync::mpsc::UnboundedReceiver;

const TTL: Duration = Duration::from_secs(30);

struct World {
    kits: Vec<TestKit>,
    journal: TestKit,
    spec: AppSpec,
    v1: Release,
    v2: Release,
}

fn fleet() -> AppId {
    AppId::new(Namespace::new("fleets").unwrap(), Name::new("web").unwrap())
}

impl World {
    fn new(n: usize) -> Self {
        let (spec, v1, v2) = testkit::sample_app(2);
        let kits = (0..n)
            .map(|_| {
                let kit = TestKit::new();
                kit.seed(&spec, Track::Stable, &v1);
                kit
            })
            .collect();
        Self { kits, journal: TestKit::new(), spec, v1, v2 }
    }

    fn plan(&self, holder: &str, gate: Gate) -> FleetPlan {
        let plan = Canary::with_steps(vec![Step::SetWeight(Percent::new(50).unwrap())]).plan(&PlanInput::new(2));
        let mut b = FleetPlan::builder(fleet(), self.v2.clone())
            .from(self.v1.clone())
            .waves(WavePolicy::Explicit(vec![
                vec!["t0".into(), "t1".into()],
                vec!["t2".into(), "t3".into()],
                vec!["t4".into(), "t5".into()],
            ]))
            .gate(gate)
            .max_concurrent(1)
            .rollback(RollbackPolicy::FailedWave);
        for (i, kit) in self.kits.iter().enumerate() {
            let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
                .router(kit.router())
                .config(EngineConfig::default().holder(format!("{holder}-{i}")).lock_ttl(TTL))
                .build();
            b = b.target(FleetTarget::new(format!("t{i}"), Arc::new(engine), self.spec.clone(), plan.clone()));
        }
        b.build().unwrap()
    }

    fn driver(&self, holder: &str) -> FleetDriver {
        FleetDriver::new(self.journal.state_store())
            .config(FleetConfig::default().holder(holder).lease_ttl(TTL).control_interval(Duration::from_secs(1)))
    }

    fn control(&self) -> FleetControl {
        FleetControl::new(self.journal.state_store(), fleet())
    }

    fn version(&self, i: usize) -> Vec<String> {
        self.kits[i].snapshot(&self.spec.id()).serving().iter().map(ToString::to_string).collect()
    }
}

/// The next event that `pick` accepts, within a generous (virtual) time.
async fn until(events: &mut UnboundedReceiver<FleetEvent>, pick: impl Fn(&FleetEvent) -> bool) -> FleetEvent {
    tokio::time::timeout(Duration::from_secs(3600), async {
        loop {
            let e = events.recv().await.expect("the fleet ended first");
            if pick(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event within an hour")
}

#[tokio::test(start_paused = true)]
async fn pause_resume_promote_and_abort_from_another_process() {
    let world = Arc::new(World::new(6));
    let app = world.spec.id();
    // t0 becomes ready only when the test says so: the fleet provably waits in wave 1.
    world.kits[0].set_manual_ready(true);
    let mut driver = world.driver("a");
    let mut events = driver.events();
    let plan = world.plan("a", Gate::Approval);
    let run = tokio::spawn(async move { driver.run(&plan).await });
    until(&mut events, |e| matches!(e, FleetEvent::TargetStarted { target, .. } if target == "t0")).await;
    let control = world.control();

    // No gate waits: a promotion is refused and not remembered.
    let refused = control.promote().await.unwrap_err();
    assert!(matches!(refused, FleetError::PromoteRejected { .. }), "{refused}");

    // A second driver does not take a fleet whose lease is renewed.
    let second = world.driver("b").run(&world.plan("b", Gate::Approval)).await.unwrap_err();
    assert!(matches!(second, FleetError::Locked { .. }), "{second}");

    control.pause().await.unwrap();
    until(&mut events, |e| matches!(e, FleetEvent::Paused { paused: true })).await;
    // t0 ends; paused, the fleet starts nothing new.
    let done =
        async { until(&mut events, |e| matches!(e, FleetEvent::TargetDone { target, .. } if target == "t0")).await };
    let mark = async {
        loop {
            world.kits[0].mark_ready(&app, Track::Canary);
            world.kits[0].mark_ready(&app, Track::Stable);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! { e = done => assert!(matches!(e, FleetEvent::TargetDone { status: DeploymentStatus::Succeeded, .. })), () = mark => {} }
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(world.kits[1].calls().is_empty(), "a paused fleet started t1");

    control.resume().await.unwrap();
    until(&mut events, |e| matches!(e, FleetEvent::GateWaiting { wave: 0, gate: Gate::Approval })).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(world.kits[2].calls().is_empty(), "wave 2 started before its gate was promoted");
    control.promote().await.unwrap();
    until(&mut events, |e| matches!(e, FleetEvent::GatePassed { wave: 0, .. })).await;
    until(&mut events, |e| matches!(e, FleetEvent::GateWaiting { wave: 1, .. })).await;
    control.abort("error budget burnt").await.unwrap();
    let record = run.await.unwrap().unwrap();

    assert_eq!(record.status, Some(FleetStatus::RolledBack));
    assert!(record.cause.as_deref().is_some_and(|c| c.contains("error budget burnt")), "{:?}", record.cause);
    let v1 = vec![world.v1.version.to_string()];
    let v2 = vec![world.v2.version.to_string()];
    assert_eq!((world.version(0), world.version(1)), (v2.clone(), v2), "wave 1 keeps the release");
    assert_eq!((world.version(2), world.version(3)), (v1.clone(), v1.clone()), "wave 2 rolled back");
    assert_eq!((world.version(4), world.version(5)), (v1.clone(), v1), "wave 3 untouched");
    assert!(world.kits[4].calls().is_empty() && world.kits[5].calls().is_empty());
    for t in ["t2", "t3"] {
        let revert = record.target(t).unwrap().revert.as_ref().unwrap();
        assert_eq!(revert.status, DeploymentStatus::Succeeded);
        assert_eq!(revert.record.as_ref().unwrap().to.version, world.v1.version);
    }
    assert!(record.log.iter().any(|l| l.contains("paused by a control request")), "{:?}", record.log);
    // Nothing is in progress any more.
    assert!(matches!(control.pause().await.unwrap_err(), FleetError::NoFleet { .. }));
}

struct FailWave(usize);

#[async_trait]
impl WaveCheck for FailWave {
    async fn check(&self, wave: usize, targets: &[TargetRecord]) -> Result<(), String> {
        assert_eq!(targets.len(), 2, "the wave's targets");
        if wave == self.0 { Err("p95 latency 900 ms > 500 ms across the wave".into()) } else { Ok(()) }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_wave_check_stops_the_line_and_an_unknown_one_is_refused() {
    let world = World::new(6);
    let gate = Gate::Check { name: "latency".into() };
    let unknown = world.driver("a").run(&world.plan("a", gate.clone())).await.unwrap_err();
    assert!(matches!(unknown, FleetError::Invalid { .. }) && unknown.to_string().contains("latency"), "{unknown}");
    assert!(world.kits.iter().all(|k| k.calls().is_empty()), "an invalid fleet touched a target");

    let driver = world.driver("a").check("latency", Arc::new(FailWave(1)));
    let record = driver.run(&world.plan("a", gate)).await.unwrap();
    assert_eq!(record.status, Some(FleetStatus::RolledBack));
    assert!(record.cause.as_deref().is_some_and(|c| c.contains("p95 latency")), "{:?}", record.cause);
    let v1 = vec![world.v1.version.to_string()];
    let v2 = vec![world.v2.version.to_string()];
    assert_eq!(world.version(0), v2);
    assert_eq!(world.version(2), v1);
    assert!(world.kits[4].calls().is_empty());
}
