//! Fleet rollouts on the in-memory test kit: one release across nine clusters in
//! three waves (one per region), with stop-the-line and fleet rollback.
//!
//! 1. Release 2.0.0 goes to `eu` (3 clusters), bakes 10 minutes, then to `us`
//!    and `ap`: every cluster ends on 2.0.0.
//! 2. Release 2.1.0 crash-loops in one `us` cluster: the line stops in wave 2,
//!    the `us` clusters go back to 2.0.0, `eu` too (the policy rolls back the
//!    whole fleet) and `ap` is never touched.
//!
//! Each cluster is a test kit of its own with its own engine (platform, router,
//! state and history stores); the fleet journal lives in a store of its own.
//! Events print with the time on tokio's paused clock.
//!
//! Run with `cargo run -p deploy-examples --example fleet`; add `--dry-run` to
//! print the fleet plan only.

use std::sync::Arc;
use std::time::Duration;

use deploy_core::engine::{EngineConfig, RolloutEngine};
use deploy_core::fleet::{FleetConfig, FleetDriver, FleetPlan, FleetRecord, FleetTarget, RollbackPolicy, WavePolicy};
use deploy_core::model::{AppId, ImageRef, Name, Namespace, Percent, Release, Track, Version};
use deploy_core::plan::Step;
use deploy_core::strategy::{Canary, PlanInput, Strategy};
use deploy_core::testkit::{self, TestKit};

type Error = Box<dyn std::error::Error>;

const REGIONS: [&str; 3] = ["eu", "us", "ap"];

struct Fleet {
    clusters: Vec<(String, &'static str, TestKit)>,
    journal: TestKit,
}

fn release(version: &str) -> Result<Release, Error> {
    Ok(Release::new(Version::new(version)?, ImageRef::parse(&format!("registry.local/shop/checkout:{version}"))?))
}

impl Fleet {
    fn new() -> Self {
        let (spec, v1, _) = testkit::sample_app(3);
        let clusters = REGIONS
            .iter()
            .flat_map(|region| (1..=3).map(move |i| (format!("{region}-{i}"), *region)))
            .map(|(name, region)| {
                let kit = TestKit::new();
                kit.seed(&spec, Track::Stable, &v1);
                (name, region, kit)
            })
            .collect();
        Self { clusters, journal: TestKit::new() }
    }

    fn plan(&self, to: &Release, from: &Release) -> Result<FleetPlan, Error> {
        let (spec, _, _) = testkit::sample_app(3);
        let steps =
            [25, 50, 100].into_iter().map(|w| Percent::new(w).map(Step::SetWeight)).collect::<Result<_, _>>()?;
        let plan = Canary::with_steps(steps).plan(&PlanInput::new(spec.replicas));
        let fleet = AppId::new(Namespace::new("fleets")?, Name::new("checkout")?);
        let mut builder = FleetPlan::builder(fleet, to.clone())
            .from(from.clone())
            .waves(WavePolicy::ByLabel { key: "region".into(), values: REGIONS.map(String::from).to_vec() })
            .bake(Duration::from_secs(600))
            .max_concurrent(2)
            .rollback(RollbackPolicy::Fleet);
        for (name, region, kit) in &self.clusters {
            let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
                .router(kit.router())
                .config(EngineConfig::default().holder(format!("fleet-example-{name}")))
                .build();
            builder = builder.target(
                FleetTarget::new(name.clone(), Arc::new(engine), spec.clone(), plan.clone()).label("region", *region),
            );
        }
        Ok(builder.build()?)
    }

    async fn run(&self, to: &Release, from: &Release) -> Result<FleetRecord, Error> {
        let plan = self.plan(to, from)?;
        let mut driver =
            FleetDriver::new(self.journal.state_store()).config(FleetConfig::default().holder("fleet-example"));
        let mut events = driver.events();
        let started = tokio::time::Instant::now();
        let printer = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                println!("  [+{:>5} s] {event}", started.elapsed().as_secs());
            }
        });
        let record = driver.run(&plan).await;
        drop(driver);
        let _ = printer.await;
        Ok(record?)
    }

    fn summary(&self, record: &FleetRecord) {
        let (spec, _, _) = testkit::sample_app(3);
        println!("  fleet {}: {:?}", record.release.version, record.status.map(|s| s.to_string()));
        for (name, region, kit) in &self.clusters {
            let serving: Vec<String> = kit.snapshot(&spec.id()).serving().iter().map(ToString::to_string).collect();
            let t = record.target(name);
            let forward = t.and_then(|t| t.forward.as_ref()).map_or("-".to_owned(), |r| r.status.to_string());
            let revert = t.and_then(|t| t.revert.as_ref()).map_or("-".to_owned(), |r| r.status.to_string());
            println!("  {name:<5} {region}  serves {:<7} forward {forward:<12} back {revert}", serving.join(","));
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Error> {
    let fleet = Fleet::new();
    let (v1, v2, v21) = (release("1.0.0")?, release("2.0.0")?, release("2.1.0")?);
    if std::env::args().any(|a| a == "--dry-run") {
        print!("{}", fleet.plan(&v2, &v1)?);
        return Ok(());
    }
    println!("== fleet rollout of 2.0.0 ==");
    let record = fleet.run(&v2, &v1).await?;
    fleet.summary(&record);
    if record.targets.iter().any(|t| !t.runs_new_release()) {
        return Err("2.0.0 should run everywhere".into());
    }

    println!("\n== fleet rollout of 2.1.0, which crash-loops in us-2 ==");
    fleet.clusters[4].2.doomed(&v21.version, "CrashLoopBackOff: panic at startup");
    let record = fleet.run(&v21, &v2).await?;
    fleet.summary(&record);
    if let Some(cause) = &record.cause {
        println!("  stopped because {cause}");
    }
    // The ap clusters keep the one record of 2.0.0: 2.1.0 never reached them.
    let untouched = fleet.clusters[6..].iter().all(|(_, _, kit)| kit.history().records().len() == 1);
    if !untouched || record.targets.iter().any(|t| t.runs_new_release()) {
        return Err("2.1.0 should be rolled back everywhere and never reach ap".into());
    }
    Ok(())
}
