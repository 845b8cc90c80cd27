//! The suite's one check trait: an automated yes / no / "worth a look" question
//! about the world, asked before, during or after a deployment.
//!
//! [`Check`] is what a `checklist::Checklist` runs as an
//! automated item, and what the backends' preflight checks implement (deploy-k8s:
//! API server, namespace, quota, capacity). It lives in the kernel so that the
//! engine and every backend can name it without the operations toolkit.
//!
//! ```
//! use deploy_core::check::{Check, CheckOutcome, FnCheck};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let disk = FnCheck::new(|| async { CheckOutcome::passed("71% free") });
//! assert_eq!(disk.check().await, CheckOutcome::Passed("71% free".into()));
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::model::ImageRef;
use crate::registry::ImageRegistry;

/// What an automated check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
#[non_exhaustive]
pub enum CheckOutcome {
    /// All good.
    Passed(String),
    /// Worth a look, not blocking.
    Warning(String),
    /// Blocking.
    Failed(String),
}

impl CheckOutcome {
    /// A pass with a detail.
    pub fn passed(detail: impl Into<String>) -> Self {
        Self::Passed(detail.into())
    }

    /// A failure with the reason.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self::Failed(detail.into())
    }
}

/// An automated checklist item. A check that cannot find out (its backend is
/// down) answers [`CheckOutcome::Failed`]: a checklist never passes on silence.
#[async_trait]
pub trait Check: Send + Sync {
    /// Runs the check once.
    async fn check(&self) -> CheckOutcome;
}

type CheckFn = dyn Fn() -> BoxFuture<'static, CheckOutcome> + Send + Sync;

/// A check from an async closure.
///
/// ```
/// use deploy_core::check::{CheckOutcome, FnCheck};
/// let always = FnCheck::new(|| async { CheckOutcome::passed("ok") });
/// # let _ = always;
/// ```
#[derive(Clone)]
pub struct FnCheck(Arc<CheckFn>);

impl FnCheck {
    /// Wraps `f`.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckOutcome> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(f())))
    }
}

#[async_trait]
impl Check for FnCheck {
    async fn check(&self) -> CheckOutcome {
        (self.0)().await
    }
}

/// The seed's "image exists" check, through an [`ImageRegistry`]: fails when the
/// registry does not have the image or cannot be asked.
///
/// ```
/// use std::sync::Arc;
/// use deploy_core::check::ImageExistsCheck;
/// use deploy_core::model::ImageRef;
/// # fn demo(registry: Arc<dyn deploy_core::registry::ImageRegistry>) {
/// let check = ImageExistsCheck::new(registry, ImageRef::parse("web:1.4.2").unwrap());
/// # let _ = check;
/// # }
/// ```
pub struct ImageExistsCheck {
    registry: Arc<dyn ImageRegistry>,
    image: ImageRef,
}

impl ImageExistsCheck {
    /// Checks that `registry` has `image`.
    pub fn new(registry: Arc<dyn ImageRegistry>, image: ImageRef) -> Self {
        Self { registry, image }
    }
}

#[async_trait]
impl Check for ImageExistsCheck {
    async fn check(&self) -> CheckOutcome {
        match self.registry.exists(&self.image).await {
            Ok(true) => CheckOutcome::passed(format!("{} exists", self.image)),
            Ok(false) => CheckOutcome::failed(format!("{} is not in the registry", self.image)),
            Err(e) => CheckOutcome::failed(format!("could not ask the registry about {}: {e}", self.image)),
        }
    }
}
