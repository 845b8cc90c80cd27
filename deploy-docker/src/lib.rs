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
//!
//! Everything talks to a real engine through a [`bollard::Docker`] made by
//! [`connect::connect`], which negotiates the API version (a 20.10 engine speaks 1.41).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod build_log;
pub mod builder;
pub mod connect;
pub mod containers;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod error;
pub mod labels;
pub mod networks;
pub mod platform;
pub mod registry;
pub mod router;


pub use builder::{BuilderConfig, DockerImageBuilder};
pub use error::DockerError;
pub use platform::DockerPlatform;
pub use registry::DockerRegistry;
pub use router::NetworkAliasRouter;
