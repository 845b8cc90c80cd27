//! Hooks: a one-shot job that a plan runs at a fixed point of a rollout (a
//! database backup before it, a cache warm-up after promotion, a notification
//! job on rollback), through [`Platform::run_hook`](crate::platform::Platform::run_hook).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{EnvVar, HumanDuration, ImageRef, Name};

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookWhen {
    /// Before the rollout changes anything; its failure stops the rollout with
    /// nothing to undo. The plan must put it before every step that changes the
    /// platform or the traffic.
    BeforeRollout,
    /// Once the new release serves; its failure rolls the rollout back.
    AfterPromotion,
    /// After a rollback has restored the previous release; its failure is noted
    /// in the record and does not undo the rollback.
    OnRollback,
}

impl fmt::Display for HookWhen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BeforeRollout => "before the rollout",
            Self::AfterPromotion => "after promotion",
            Self::OnRollback => "on rollback",
        })
    }
}

/// What a hook runs: one container to completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HookSpec {
    /// The hook's name, unique in its plan (`db-backup`).
    pub name: Name,
    /// The image to run.
    pub image: ImageRef,
    /// The command; empty runs the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment, values or references to secrets (never secret values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// How often a failed run is retried before the hook fails.
    pub retries: u32,
    /// How long the hook may take in all, retries included.
    pub deadline: HumanDuration,
    /// How long a finished run is kept for inspection before the platform deletes it.
    pub keep_for: HumanDuration,
}

impl HookSpec {
    /// Runs `image` once (no retry), within 10 minutes, keeping the finished run
    /// for an hour.
    pub fn new(name: Name, image: ImageRef) -> Self {
        Self {
            name,
            image,
            command: Vec::new(),
            env: Vec::new(),
            retries: 0,
            deadline: HumanDuration::new(std::time::Duration::from_secs(600)),
            keep_for: HumanDuration::new(std::time::Duration::from_secs(3600)),
        }
    }

    /// Sets the command.
    #[must_use]
    pub fn command(mut self, command: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, var: EnvVar) -> Self {
        self.env.push(var);
        self
    }

    /// Retries a failed run this many times.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the deadline of the whole hook.
    #[must_use]
    pub fn deadline(mut self, deadline: HumanDuration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Keeps a finished run this long.
    #[must_use]
    pub fn keep_for(mut self, keep_for: HumanDuration) -> Self {
        self.keep_for = keep_for;
        self
    }
}

impl fmt::Display for HookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hook {} ({})", self.name, self.image)
    }
}
