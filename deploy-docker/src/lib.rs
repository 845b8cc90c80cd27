//! Docker backend of deploy-rs on bollard: image builds, registries, containers and a Docker platform.
//!
//! This crate is being built; see the workspace README for what works today.
#![cfg_attr(docsrs, feature(doc_cfg))]
