//! The core of deploy-rs: the domain model, the traits every backend implements,
//! the rollout engine that drives them, and, behind features, the operations
//! toolkit around it.
//!
//! It depends on no backend library (no `kube`, no `bollard`, no `redis`), so that
//! code which only describes deployments, plans them or tests them compiles
//! nothing heavy; backends live in their own crates: `deploy-k8s`,
//! `deploy-docker`, `deploy-security`, `deploy-cache`. Without features the crate
//! is the kernel (model, traits, plans, strategies, analysis, engine, stores) and
//! compiles none of the toolkit's dependencies. Its I/O is opt-in: the `config`
//! loader reads the configuration files it is given (and environment variables),
//! `file-store` keeps state in a directory, and `http` and `prometheus` speak HTTP.
//! Everything else works on the traits' objects.
//!
//! # Modules
//!
//! - The domain model, [`model`]: validated names, image references, quantities,
//!   durations, percentages, app specs, releases, tracks, traffic splits,
//!   environment profiles, deployment records.
//! - The traits, each object safe and used as `Arc<dyn Trait>`:
//!   [`platform::Platform`], [`traffic::TrafficRouter`], [`health::HealthCheck`],
//!   [`metrics::MetricsProvider`], [`state::StateStore`], [`history::HistoryStore`],
//!   [`build::ImageBuilder`], [`registry::ImageRegistry`],
//!   [`scan::VulnerabilityScanner`], [`secret::SecretManager`], [`cache::Cache`] and
//!   [`notify::Notifier`]. Every error type implements [`error::Classify`], which
//!   tells a caller whether a retry makes sense.
//! - Rollouts: [`strategy`] (rolling, blue-green, canary) makes a [`plan::Plan`],
//!   [`engine::RolloutEngine`] executes it, saves progress, rolls back on its own
//!   and on the caller's word, and [`analysis`] judges each step (thresholds,
//!   canary versus baseline, Mann-Whitney).
//! - `testkit` (feature): in-memory backends with fault injection, on tokio's
//!   clock, for testing code that embeds this crate.
//! - Deployment [`checklist`]s, whose `Pre` items the engine's preflight runs.
//! - The operations toolkit, behind features: `pipeline` (stages, branch rules,
//!   rollback, notifications; `pipeline::EngineDeployer` deploys through the
//!   engine), `dora` metrics, `lb` load balancing, layered `config`, `monitoring`
//!   configuration (Prometheus, Grafana) and the strategy advisor in `recommend`.
//!
//! # Features
//!
//! - `full`: the whole operations toolkit, `pipeline`, `lb`, `config` (with
//!   `toml` and `yaml`) and `ops`; no backend, no `metrics`, no `testkit`.
//! - `pipeline`, `lb`, `config`: the modules of the same names (`lb` pulls
//!   arc-swap and rand, `pipeline` tokio-util, `config` tokio's `fs`).
//! - `ops`: the `dora`, `recommend` and `monitoring` modules.
//! - `testkit`: the in-memory backends of the `testkit` module.
//! - `file-store`: `store::file`, durable state and history in a directory.
//! - `http`: `http_check::HttpHealthCheck` and `webhook::WebhookNotifier`, over
//!   reqwest with rustls, under the one client policy of `http_client` (no
//!   redirects that carry secrets, https for secrets, timeouts, bounded bodies).
//! - `prometheus` (implies `http`): `prometheus::PrometheusProvider`, metrics from
//!   the Prometheus HTTP API, with Flagger's built-in metric templates.
//! - `toml`, `yaml`: TOML and YAML files as layers of the layered configuration
//!   (JSON needs no feature); both imply `config`.
//! - `metrics`: rollout metrics through the `metrics` facade.
//! - `cdevents` (implies `http`): CDEvents as a webhook format.
//!
//! # Example
//!
//! A spec, made ready for production:
//!
//! ```
//! use deploy_core::model::{AppSpec, Environment, EnvironmentProfile, ImageRef, Name, Namespace, Port, Probe};
//!
//! let spec = AppSpec::new(
//!     Namespace::new("shop").unwrap(),
//!     Name::new("checkout").unwrap(),
//!     ImageRef::parse("registry.example.com/shop/checkout:1.4.2").unwrap(),
//! )
//! .port(Port::tcp("http", 8080).unwrap())
//! .readiness(Probe::http("/ready", 8080));
//! let spec = EnvironmentProfile::preset(Environment::Production).apply_to(spec);
//! assert!(spec.validate().is_ok());
//! assert_eq!(spec.replicas, 3);
//! ```
//!
//! A canary rollout (10 → 25 → 50 → 75 → 100 %) on the test kit, with the
//! `testkit` feature; on a cluster the kit's backends are replaced by a backend
//! crate's, the rest stays:
//!
//! ```
//! # #[cfg(feature = "testkit")]
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! use deploy_core::engine::{RolloutEngine, RolloutEvent, RolloutRequest};
//! use deploy_core::model::{DeploymentStatus, Track};
//! use deploy_core::strategy::{Canary, PlanInput, Strategy};
//! use deploy_core::testkit::{self, TestKit};
//!
//! let kit = TestKit::new();
//! let (spec, v1, v2) = testkit::sample_app(4);
//! kit.seed(&spec, Track::Stable, &v1);
//! let engine = RolloutEngine::builder(kit.platform(), kit.state_store(), kit.history_store())
//!     .router(kit.router())
//!     .build();
//!
//! let plan = Canary::default().plan(&PlanInput::new(spec.replicas));
//! let mut rollout = engine.start(RolloutRequest::new(spec.clone(), v2.clone(), plan).from(v1)).await.unwrap();
//! let mut weights = Vec::new();
//! while let Some(event) = rollout.next_event().await {
//!     if let RolloutEvent::WeightChanged { split } = event {
//!         weights.push(split.weight(Track::Canary).to_string());
//!     }
//! }
//! assert_eq!(weights, ["10%", "25%", "50%", "75%", "100%", "0%"]);
//! assert_eq!(rollout.wait().await.unwrap().status, DeploymentStatus::Succeeded);
//! assert_eq!(kit.snapshot(&spec.id()).tracks[&Track::Stable].version, v2.version);
//! # });
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod analysis;
pub mod backoff;
pub mod build;
pub mod cache;
#[cfg(feature = "cdevents")]
#[cfg_attr(docsrs, doc(cfg(feature = "cdevents")))]
pub mod cdevents;
pub mod check;
pub mod checklist;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
#[cfg(feature = "ops")]
#[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
pub mod dora;
pub mod dr;
pub mod engine;
pub mod error;
pub mod fleet;
pub mod health;
pub mod history;
pub mod hook;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http_check;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http_client;
#[cfg(feature = "lb")]
#[cfg_attr(docsrs, doc(cfg(feature = "lb")))]
pub mod lb;
pub mod metrics;
pub mod model;
#[cfg(feature = "ops")]
#[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
pub mod monitoring;
pub mod notify;
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub mod pipeline;
pub mod plan;
pub mod platform;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
mod random;
#[cfg(feature = "ops")]
#[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
pub mod recommend;
pub mod registry;
pub mod scan;
pub mod secret;
pub mod signed_state;
pub mod state;
pub mod store;
pub mod strategy;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod traffic;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod webhook;

pub use async_trait::async_trait;
