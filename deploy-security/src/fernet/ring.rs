//! A ring of Fernet keys for rotation, as Python's `MultiFernet`.

use deploy_core::secret::SecretBytes;

use super::FernetError;
use super::key::{DecryptOptions, Decrypted, FernetKey, decrypt_with, unix_now};

/// Fernet keys newest first: encrypts with the newest, decrypts with any, and
/// re-encrypts old tokens under the newest so that old keys can be retired.
///
/// Rotation in three steps: [`KeyRing::rotate`] in a new key (new tokens use it, old
/// ones still decrypt), [`KeyRing::reencrypt`] every stored token, then
/// [`KeyRing::retire_older_than`] the old keys.
///
/// ```
/// use deploy_security::fernet::{DecryptOptions, FernetKey, KeyRing};
/// let old = FernetKey::generate()?;
/// let token = old.encrypt(b"s3cret")?;
///
/// let mut ring = KeyRing::new(old);
/// ring.rotate(FernetKey::generate()?);
/// let fresh = ring.reencrypt(&token, DecryptOptions::default())?;
/// ring.retire_older_than(1);
/// assert_eq!(ring.decrypt(&fresh, DecryptOptions::default())?.plaintext.expose_secret(), b"s3cret");
/// assert!(ring.decrypt(&token, DecryptOptions::default()).is_err());
/// # Ok::<(), deploy_security::fernet::FernetError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// Newest first; never empty.
    keys: Vec<FernetKey>,
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(key: FernetKey) -> Self {
        Self { keys: vec![key] }
    }

    /// A ring from keys newest first; fails when there are none.
    pub fn from_keys(keys: Vec<FernetKey>) -> Result<Self, FernetError> {
        if keys.is_empty() { Err(FernetError::EmptyKeyRing) } else { Ok(Self { keys }) }
    }

    /// Makes `key` the newest: it encrypts from now on; older keys still decrypt.
    pub fn rotate(&mut self, key: FernetKey) {
        self.keys.insert(0, key);
    }

    /// Keeps only the `keep` newest keys (at least one); returns how many were removed.
    pub fn retire_older_than(&mut self, keep: usize) -> usize {
        let keep = keep.max(1);
        let removed = self.keys.len().saturating_sub(keep);
        self.keys.truncate(keep);
        removed
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring has at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that encrypts.
    pub fn newest(&self) -> &FernetKey {
        &self.keys[0]
    }

    /// Encrypts with the newest key.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, FernetError> {
        self.newest().encrypt(plaintext)
    }

    /// Decrypts with whichever key made the token.
    pub fn decrypt(&self, token: &str, options: DecryptOptions) -> Result<Decrypted, FernetError> {
        decrypt_with(&self.keys, token, options, unix_now()?)
    }

    /// [`KeyRing::decrypt`] with a caller-chosen "now" instead of the clock; dangerous
    /// outside tests (see [`FernetKey::danger_decrypt_at_time`]).
    pub fn danger_decrypt_at_time(
        &self,
        token: &str,
        options: DecryptOptions,
        now_unix_secs: u64,
    ) -> Result<Decrypted, FernetError> {
        decrypt_with(&self.keys, token, options, now_unix_secs)
    }

    /// Decrypts `token` with any key and encrypts its plaintext again under the newest,
    /// keeping the original timestamp (as Python's `MultiFernet.rotate`), so that a
    /// time-to-live still counts from when the secret was first written.
    pub fn reencrypt(&self, token: &str, options: DecryptOptions) -> Result<String, FernetError> {
        let Decrypted { plaintext, timestamp, .. } = self.decrypt(token, options)?;
        self.newest().encrypt_at(plaintext.expose_secret(), timestamp)
    }

    /// Decrypts into bytes only.
    pub fn decrypt_bytes(&self, token: &str, options: DecryptOptions) -> Result<SecretBytes, FernetError> {
        self.decrypt(token, options).map(|d| d.plaintext)
    }
}
