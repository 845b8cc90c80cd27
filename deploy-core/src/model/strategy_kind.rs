//! The family of strategy a plan comes from: [`StrategyKind`], in plans, events
//! and deployment records.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The family of strategy that produced a plan, and that a deployment record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StrategyKind {
    /// The platform's native rolling update.
    Rolling,
    /// Two full copies; traffic switches at once.
    BlueGreen,
    /// A small share of traffic first, then more.
    Canary,
    /// A Helm release upgrade, as read from Helm's history
    /// (`deploy-k8s`'s Helm reader); no strategy of the engine produces it.
    Helm,
    /// A fleet rollout's own journal record (module `fleet`), which drives one
    /// rollout of another kind per target; no plan has this kind.
    Fleet,
    /// A failover of the traffic to a standby site (`RolloutEngine::failover`);
    /// no plan has this kind.
    Failover,
    /// A fail-back of the traffic to the original primary site after a failover;
    /// no plan has this kind.
    FailBack,
}

impl StrategyKind {
    /// The name in records and spans (`rolling`, `blue-green`, `canary`, `helm`,
    /// `fleet`, `failover`, `fail-back`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::BlueGreen => "blue-green",
            Self::Canary => "canary",
            Self::Helm => "helm",
            Self::Fleet => "fleet",
            Self::Failover => "failover",
            Self::FailBack => "fail-back",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
