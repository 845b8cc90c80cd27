//! Placeholder while the integration test is written.
