//! Progress that cannot be changed behind the engine's back: a [`StateStore`]
//! decorator that signs every saved [`RolloutState`] with HMAC-SHA-256 and refuses
//! to load one whose signature does not match.
//!
//! Saved progress holds the spec, the plan and the image a `resume` will deploy.
//! Whoever can write the store's objects (`configmaps update` in a namespace, for
//! the Kubernetes store) could otherwise make the engine deploy any image. With a
//! key that only the engines hold, a changed document is refused with
//! [`StateError::Corrupt`] naming why, and nothing is deployed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::model::AppId;
use crate::state::{LockLease, LockRequest, Revision, RolloutState, StateError, StateStore, Versioned};

/// The key that signs saved progress: at least 32 bytes, held only by the engines.
/// `Debug` never shows it.
#[derive(Clone)]
pub struct StateKey(Arc<Zeroizing<Vec<u8>>>);

impl StateKey {
    /// A key of at least 32 bytes (256 bits), such as 32 bytes from the OS's
    /// random source kept in a secret manager.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, StateError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.len() < 32 {
            return Err(StateError::backend(
                "make a state key",
                crate::error::ErrorKind::InvalidInput,
                format!("a state key needs at least 32 bytes, got {}", bytes.len()),
            ));
        }
        Ok(Self(Arc::new(bytes)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

/// Signs what it saves and checks what it loads; everything else (locks, clear)
/// passes through to the inner store.
pub struct SignedStateStore {
    inner: Arc<dyn StateStore>,
    key: StateKey,
}

impl fmt::Debug for SignedStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedStateStore").field("key", &self.key).finish_non_exhaustive()
    }
}

impl SignedStateStore {
    /// Signs the progress `inner` keeps with `key`.
    pub fn new(inner: Arc<dyn StateStore>, key: StateKey) -> Self {
        Self { inner, key }
    }

    /// What is signed: the document without its own `signature`.
    fn unsigned_bytes(&self, state: &RolloutState) -> Result<Vec<u8>, StateError> {
        let mut unsigned = state.clone();
        unsigned.signature = None;
        serde_json::to_vec(&unsigned)
            .map_err(|e| StateError::backend("encode progress to sign it", crate::error::ErrorKind::InvalidInput, e))
    }

    /// The signature of `state`.
    fn sign(&self, state: &RolloutState) -> Result<Vec<u8>, StateError> {
        let mut mac = self.key.mac();
        mac.update(&self.unsigned_bytes(state)?);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[async_trait]
impl StateStore for SignedStateStore {
    async fn load(&self, app: &AppId) -> Result<Option<Versioned<RolloutState>>, StateError> {
        let Some(loaded) = self.inner.load(app).await? else { return Ok(None) };
        let corrupt = |reason: &str| StateError::Corrupt { app: app.clone(), reason: reason.to_owned() };
        let Some(signature) = loaded.value.signature.as_deref() else {
            return Err(corrupt("the saved progress is not signed; it was written without the engines' state key"));
        };
        let given = unhex(signature).ok_or_else(|| corrupt("the saved progress has a malformed signature"))?;
        let mut mac = self.key.mac();
        mac.update(&self.unsigned_bytes(&loaded.value)?);
        // Constant-time comparison (hmac's verify), never `==` on the bytes.
        if mac.verify_slice(&given).is_err() {
            return Err(corrupt(
                "the saved progress does not match its signature: it was changed outside the engine, and is not run",
            ));
        }
        Ok(Some(loaded))
    }

    async fn save(
        &self,
        app: &AppId,
        state: &RolloutState,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let mut signed = state.clone();
        signed.signature = Some(hex(&self.sign(state)?));
        self.inner.save(app, &signed, expected).await
    }

    async fn clear(&self, app: &AppId, expected: &Revision) -> Result<(), StateError> {
        self.inner.clear(app, expected).await
    }

    async fn read_lock(&self, app: &AppId) -> Result<Option<LockLease>, StateError> {
        self.inner.read_lock(app).await
    }

    async fn acquire_lock(&self, app: &AppId, request: &LockRequest) -> Result<LockLease, StateError> {
        self.inner.acquire_lock(app, request).await
    }

    async fn renew_lock(&self, lease: &LockLease, ttl: Duration) -> Result<LockLease, StateError> {
        self.inner.renew_lock(lease, ttl).await
    }

    async fn release_lock(&self, lease: &LockLease) -> Result<(), StateError> {
        self.inner.release_lock(lease).await
    }
}
