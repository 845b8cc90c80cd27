//! Integration tests against real Redis servers started by the tests themselves.

mod cluster;
mod single;
mod support;
mod tiered;
