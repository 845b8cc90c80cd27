//! The core of deploy-rs: the domain model, the traits every backend implements,
//! and the rollout engine that drives them: [`strategy`] makes a [`plan::Plan`],
//! [`engine::RolloutEngine`] executes it, [`analysis`] judges each step, and the
//! `testkit` feature provides in-memory backends with fault injection.
//!
//! This crate does no I/O of its own and depends on no backend library, so that code
//! which only describes deployments, or tests them, compiles nothing heavy. Backends
//! live in their own crates: `deploy-k8s`, `deploy-docker`, `deploy-security`,
//! `deploy-cache`.
//!
//! ```
//! use deploy_core::model::{AppSpec, Environment, EnvironmentProfile, ImageRef, Name, Port, Probe};
//!
//! let spec = AppSpec::new(
//!     Name::new("checkout").unwrap(),
//!     Name::new("shop").unwrap(),
//!     ImageRef::parse("registry.example.com/shop/checkout:1.4.2").unwrap(),
//! )
//! .port(Port::tcp("http", 8080).unwrap())
//! .readiness(Probe::http("/ready", 8080));
//! let spec = EnvironmentProfile::preset(Environment::Production).apply_to(spec);
//! assert!(spec.validate().is_ok());
//! assert_eq!(spec.replicas, 3);
//! ```
//!
//! The traits, each object safe and used as `Arc<dyn Trait>`:
//! [`platform::Platform`], [`traffic::TrafficRouter`], [`health::HealthCheck`],
//! [`metrics::MetricsProvider`], [`state::StateStore`], [`history::HistoryStore`],
//! [`build::ImageBuilder`], [`registry::ImageRegistry`],
//! [`scan::VulnerabilityScanner`], [`secret::SecretManager`], [`cache::Cache`] and
//! [`notify::Notifier`]. Every error type implements [`error::Classify`], which tells
//! a caller whether a retry makes sense.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod analysis;
pub mod build;
pub mod cache;
pub mod checklist;
pub mod config;
pub mod dora;
pub mod engine;
pub mod error;
pub mod health;
pub mod history;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http_check;
pub mod lb;
pub mod metrics;
pub mod model;
pub mod monitoring;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod platform;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
pub mod recommend;
pub mod registry;
pub mod scan;
pub mod secret;
pub mod state;
pub mod strategy;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod traffic;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod webhook;

pub use async_trait::async_trait;
