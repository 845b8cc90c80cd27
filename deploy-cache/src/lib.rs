//! Caches for deploy-rs: moka in memory, Redis, and a tiered cache.
//!
//! This crate is being built; see the workspace README for what works today.
#![cfg_attr(docsrs, feature(doc_cfg))]
