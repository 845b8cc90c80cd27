//! Dockerfiles: a generator for multi-stage service images with presets for Rust,
//! Go, Python and Node ([`generate`]), and a linter with hadolint-style rule ids
//! ([`lint()`]).

pub mod generate;
pub mod lint;

pub use generate::{CompileStage, DockerfileSpec, Healthcheck, Preset, RuntimeUser};
pub use lint::lint;
