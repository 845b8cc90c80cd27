//! Security for deploy-rs: Fernet encryption, secret managers, vulnerability scanners and audits.
//!
//! This crate is being built; see the workspace README for what works today.
#![cfg_attr(docsrs, feature(doc_cfg))]
