//! Docker backend of deploy-rs on [bollard]: image builds and their analysis,
//! Dockerfile generation and lint, registry pushes and OCI-distribution look-ups,
//! containers and networks, and a Docker platform whose traffic moves by network
//! alias.
//!
//! | piece | implements |
//! |---|---|
//! | [`DockerImageBuilder`] | [`deploy_core::build::ImageBuilder`] |
//! | [`DockerRegistry`] | [`deploy_core::registry::ImageRegistry`] |
//! | [`DockerPlatform`] | [`deploy_core::platform::Platform`] |
//! | [`NetworkAliasRouter`] | [`deploy_core::traffic::TrafficRouter`] |
//! | [`dockerfile`] | Dockerfile generation with presets, and a linter |
//! | [`containers`], [`networks`] | containers, networks, logs, clean-up by label |
//! | [`workload`] | the pod-template settings a container can honour (and those it refuses) |
//! | [`config_files`] | per-release configuration files and environment in content-addressed volumes |
//! | [`events`] | the engine's container events that readiness follows |
//!
//! Everything talks to a real engine through a [`bollard::Docker`] made by
//! [`connect::connect`], which negotiates the API version (a 20.10 engine speaks 1.41).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use deploy_core::platform::Platform;
//! use deploy_core::traffic::TrafficRouter;
//! use deploy_docker::platform::PlatformConfig;
//! use deploy_docker::{DockerPlatform, NetworkAliasRouter, NetworkName};
//!
//! let docker = deploy_docker::connect::connect(&Default::default()).await?;
//! let config = PlatformConfig::default().network(NetworkName::new("shop")?).serving_network(NetworkName::new("shop-edge")?);
//! let platform: Arc<dyn Platform> = Arc::new(DockerPlatform::new(docker.clone(), config));
//! let router: Arc<dyn TrafficRouter> = Arc::new(NetworkAliasRouter::new(docker, NetworkName::new("shop-edge")?));
//! # let _ = (platform, router); Ok(()) }
//! ```
//!
//! [bollard]: https://docs.rs/bollard
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod build_log;
pub mod builder;
pub mod config_files;
pub mod connect;
pub mod containers;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod labels;
pub mod network_name;
pub mod networks;
pub mod nginx;
pub mod platform;
pub mod registry;
pub mod router;
pub mod workload;

pub use builder::{BuilderBackend, BuilderConfig, DockerImageBuilder};
pub use error::DockerError;
pub use network_name::NetworkName;
pub use platform::DockerPlatform;
pub use registry::DockerRegistry;
pub use router::NetworkAliasRouter;

// The libraries this crate's API is made of, re-exported so that users need not pin
// their own copies.
pub use bollard;
pub use deploy_core;
