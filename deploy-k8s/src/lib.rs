//! Kubernetes backend of deploy-rs on kube: manifests, platform, traffic routers, state and locks.
//!
//! This crate is being built; see the workspace README for what works today.
#![cfg_attr(docsrs, feature(doc_cfg))]
