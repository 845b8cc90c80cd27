//! Durable stores that need no cluster: the [`file`](mod@file) pair (feature `file-store`).
//!
//! The Kubernetes pair lives in `deploy-k8s`, the Redis pair in `deploy-cache`;
//! every one passes the same conformance suite
//! (`testkit::conformance`, feature `testkit`).

#[cfg(feature = "file-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "file-store")))]
pub mod file;
