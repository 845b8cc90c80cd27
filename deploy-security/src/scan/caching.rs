//! A scanner that remembers reports by image digest.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deploy_core::cache::Cache;
use deploy_core::model::ImageRef;
use deploy_core::scan::{ScanError, ScanReport, VulnerabilityScanner};
use tracing::{instrument, warn};

/// Wraps a scanner and keeps its reports in a [`Cache`], keyed by the image's digest
/// (`scan:v1:<namespace>:<sha256:…>`).
///
/// Only references pinned by digest are cached: a tag can move to other content, so a
/// tag-only reference is always scanned. Errors are never cached. A cache that fails
/// is logged and bypassed: the scan still runs, so a cache outage cannot turn into a
/// missing (or a stale "clean") report.
///
/// ```no_run
/// # async fn demo(cache: std::sync::Arc<dyn deploy_core::cache::Cache>) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use deploy_security::scan::{CachingScanner, CliScannerConfig, TrivyScanner};
/// let scanner = CachingScanner::new(TrivyScanner::new(CliScannerConfig::trivy()), cache, "trivy")
///     .ttl(Duration::from_secs(6 * 3600));
/// # Ok(()) }
/// ```
pub struct CachingScanner<S> {
    inner: S,
    cache: Arc<dyn Cache>,
    namespace: String,
    ttl: Option<Duration>,
}

impl<S> std::fmt::Debug for CachingScanner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingScanner")
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<S: VulnerabilityScanner> CachingScanner<S> {
    /// Caches `inner`'s reports in `cache` under `namespace` (name the scanner and its
    /// database, so two scanners never share entries), with the cache's default TTL.
    pub fn new(inner: S, cache: Arc<dyn Cache>, namespace: impl Into<String>) -> Self {
        Self { inner, cache, namespace: namespace.into(), ttl: None }
    }

    /// Keeps reports for `ttl`: new advisories appear daily, so keep it to hours.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The cache key of `image`, or `None` when it is not pinned by digest.
    pub fn cache_key(&self, image: &ImageRef) -> Option<String> {
        image.digest().map(|digest| format!("scan:v1:{}:{}", self.namespace, digest.as_str()))
    }
}

#[async_trait]
impl<S: VulnerabilityScanner> VulnerabilityScanner for CachingScanner<S> {
    #[instrument(skip_all, fields(scan.image = %image), err)]
    async fn scan(&self, image: &ImageRef) -> Result<ScanReport, ScanError> {
        let Some(key) = self.cache_key(image) else { return self.inner.scan(image).await };
        match self.cache.get(&key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<ScanReport>(&bytes) {
                Ok(mut report) => {
                    report.target = image.to_string();
                    return Ok(report);
                }
                Err(error) => warn!(%error, "cached scan report does not parse; scanning again"),
            },
            Ok(None) => {}
            Err(error) => warn!(%error, "scan cache unavailable; scanning without it"),
        }
        let report = self.inner.scan(image).await?;
        match serde_json::to_vec(&report) {
            Ok(bytes) => {
                if let Err(error) = self.cache.set(&key, Bytes::from(bytes), self.ttl).await {
                    warn!(%error, "could not store the scan report in the cache");
                }
            }
            Err(error) => warn!(%error, "could not encode the scan report for the cache"),
        }
        Ok(report)
    }
}
