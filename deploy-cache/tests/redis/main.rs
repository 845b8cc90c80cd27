//! Integration tests against real Redis servers started by the tests themselves.
#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions stop the test on a broken setup")]

mod cluster;
mod sentinel;
mod single;
mod stores;
mod support;
mod tiered;
mod tls;
use deploy_core::testkit::trace as trace_capture;
