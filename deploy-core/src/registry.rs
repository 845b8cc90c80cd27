//! Image registries: the [`ImageRegistry`] trait.

use async_trait::async_trait;
use futures_core::stream::BoxStream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Classify, ErrorKind, backend_error};
use crate::model::{Digest, ImageRef};

/// Progress of a push, streamed as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum PushEvent {
    /// Bytes of one layer sent so far.
    Progress {
        /// The layer's id.
        layer: String,
        /// Bytes sent.
        current: u64,
        /// The layer's size, when known.
        total: Option<u64>,
    },
    /// A status line (`Layer already exists`).
    Status {
        /// The layer, if the status is about one.
        layer: Option<String>,
        /// The status.
        status: String,
    },
    /// The push ended; always the last event of a successful stream.
    Pushed {
        /// The manifest digest the registry stored.
        digest: Digest,
    },
}

/// A failure of a registry operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry refused the credentials.
    #[error("registry {registry} refused the credentials")]
    Unauthorized {
        /// The registry host.
        registry: String,
    },
    /// The image to push does not exist locally.
    #[error("image {image} not found")]
    NotFound {
        /// The image.
        image: ImageRef,
    },
    /// The registry reported an error in the middle of a push.
    #[error("push of {image} failed: {message}")]
    PushFailed {
        /// The image.
        image: ImageRef,
        /// The registry's message.
        message: String,
    },
    /// The push stream ended without a digest.
    #[error("push of {image} ended without a digest")]
    NoDigest {
        /// The image.
        image: ImageRef,
    },
    /// The registry's backend failed.
    #[error("failed to {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The class of the failure.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

backend_error!(RegistryError);

impl Classify for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::PushFailed { .. } | Self::NoDigest { .. } => ErrorKind::Other,
            Self::Backend { kind, .. } => *kind,
        }
    }
}

/// An OCI registry: where images are pushed and looked up.
#[async_trait]
pub trait ImageRegistry: Send + Sync {
    /// Whether the registry has `image` (its tag or digest). A registry that cannot
    /// be asked is an error, never `false`: a pre-deployment check must not pass on
    /// silence.
    async fn exists(&self, image: &ImageRef) -> Result<bool, RegistryError>;

    /// The manifest digest the registry stores for `image`, if it has it.
    async fn digest(&self, image: &ImageRef) -> Result<Option<Digest>, RegistryError>;

    /// Pushes a local image and streams the progress. A successful stream ends with
    /// [`PushEvent::Pushed`]; an error reported by the registry mid-push is an `Err`
    /// item, never a log line.
    fn push(&self, image: ImageRef) -> BoxStream<'_, Result<PushEvent, RegistryError>>;

    /// Pushes `image` to its end and returns the digest.
    async fn push_to_end(&self, image: ImageRef) -> Result<Digest, RegistryError> {
        let mut stream = self.push(image.clone());
        while let Some(event) = stream.next().await {
            if let PushEvent::Pushed { digest } = event? {
                return Ok(digest);
            }
        }
        Err(RegistryError::NoDigest { image })
    }
}
