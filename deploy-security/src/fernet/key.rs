//! One Fernet key: encrypt, decrypt, generate, import and export.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use deploy_core::secret::{SecretBytes, SecretString};
use zeroize::Zeroizing;

use super::FernetError;
use super::codec::{self, ExpandedKey};
use super::token::TokenHeader;

/// Options of a decryption.
///
/// ```
/// use std::time::Duration;
/// use deploy_security::fernet::DecryptOptions;
/// let opts = DecryptOptions::default().ttl(Duration::from_secs(300));
/// assert_eq!(opts.ttl, Some(Duration::from_secs(300)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DecryptOptions {
    /// Reject tokens older than this (whole seconds count); `None` accepts any age.
    pub ttl: Option<Duration>,
}

impl DecryptOptions {
    /// Rejects tokens older than `ttl`.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// A plaintext that was decrypted, with the time its token was made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decrypted {
    /// The plaintext, zeroed on drop.
    pub plaintext: SecretBytes,
    /// When the token was made, in seconds since the Unix epoch.
    pub timestamp: u64,
    /// The position in the key ring of the key that decrypted it (0 is the newest;
    /// always 0 for a single key).
    pub key_index: usize,
}

/// A Fernet key: 16 bytes of HMAC-SHA256 signing key and 16 bytes of AES-128 key.
///
/// Prints as `[redacted]`, zeroes its memory on drop, and exports itself only through
/// [`FernetKey::to_base64`], which returns a [`SecretString`].
///
/// ```
/// use deploy_security::fernet::{DecryptOptions, FernetKey};
/// let key = FernetKey::generate()?;
/// let token = key.encrypt(b"db password")?;
/// let plain = key.decrypt(&token, DecryptOptions::default())?;
/// assert_eq!(plain.expose_secret(), b"db password");
/// assert_eq!(format!("{key:?}"), "FernetKey([redacted])");
/// # Ok::<(), deploy_security::fernet::FernetError>(())
/// ```
#[derive(Clone)]
pub struct FernetKey {
    raw: Zeroizing<[u8; 32]>,
    pub(crate) expanded: ExpandedKey,
}

impl fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FernetKey([redacted])")
    }
}

impl FernetKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, FernetError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        getrandom::fill(raw.as_mut()).map_err(|e| FernetError::Random(Box::new(e)))?;
        Self::from_bytes(&raw)
    }

    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, FernetError> {
        Ok(Self { raw: Zeroizing::new(*bytes), expanded: ExpandedKey::new(bytes) })
    }

    /// A key from its URL-safe base64 form (44 characters with padding, as Python's
    /// `Fernet.generate_key()` prints it; padding is optional).
    pub fn from_base64(encoded: &SecretString) -> Result<Self, FernetError> {
        let text = encoded.expose_secret().trim().trim_end_matches('=');
        let decoded = Zeroizing::new(
            URL_SAFE_NO_PAD.decode(text).map_err(|_| FernetError::InvalidKey { reason: "not url-safe base64" })?,
        );
        let raw: &[u8; 32] =
            decoded.as_slice().try_into().map_err(|_| FernetError::InvalidKey { reason: "must decode to 32 bytes" })?;
        Self::from_bytes(raw)
    }

    /// The key in URL-safe base64 with padding, the form every Fernet implementation reads.
    pub fn to_base64(&self) -> SecretString {
        SecretString::new(URL_SAFE.encode(self.raw.as_ref()))
    }

    /// Encrypts `plaintext` into a token dated now.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, FernetError> {
        self.encrypt_at(plaintext, unix_now()?)
    }

    /// Encrypts `plaintext` into a token dated `unix_secs`, with an IV from the
    /// operating system's random source.
    pub(crate) fn encrypt_at(&self, plaintext: &[u8], unix_secs: u64) -> Result<String, FernetError> {
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).map_err(|e| FernetError::Random(Box::new(e)))?;
        self.expanded.seal(plaintext, unix_secs, &iv)
    }

    /// Encrypts a UTF-8 secret into a token dated now.
    pub fn encrypt_str(&self, plaintext: &SecretString) -> Result<String, FernetError> {
        self.encrypt(plaintext.expose_secret().as_bytes())
    }

    /// Decrypts and authenticates a token, checking its age against `options.ttl`.
    pub fn decrypt(&self, token: &str, options: DecryptOptions) -> Result<SecretBytes, FernetError> {
        decrypt_with(std::slice::from_ref(self), token, options, unix_now()?).map(|d| d.plaintext)
    }

    /// Decrypts a token whose plaintext is UTF-8 text.
    pub fn decrypt_str(&self, token: &str, options: DecryptOptions) -> Result<SecretString, FernetError> {
        let bytes = self.decrypt(token, options)?;
        let text = bytes.expose_str().map_err(|_| FernetError::NotText)?;
        Ok(SecretString::from(text))
    }

    /// Encrypts with a caller-chosen timestamp (seconds since the Unix epoch) instead
    /// of the clock. Dangerous: a wrong time defeats time-to-live checks. For tests,
    /// test vectors, and re-encryption that keeps a token's original time.
    ///
    /// # Panics
    ///
    /// When the operating system's random source fails (as the `fernet` crate does);
    /// [`FernetKey::encrypt`] returns [`FernetError::Random`] instead.
    pub fn danger_encrypt_at_time(&self, plaintext: &[u8], unix_secs: u64) -> String {
        match self.encrypt_at(plaintext, unix_secs) {
            Ok(token) => token,
            Err(err) => panic!("cannot make a fernet IV: {err}"),
        }
    }

    /// Decrypts with a caller-chosen "now" (seconds since the Unix epoch) instead of
    /// the clock. Dangerous for the same reason as [`FernetKey::danger_encrypt_at_time`].
    pub fn danger_decrypt_at_time(
        &self,
        token: &str,
        options: DecryptOptions,
        now_unix_secs: u64,
    ) -> Result<SecretBytes, FernetError> {
        decrypt_with(std::slice::from_ref(self), token, options, now_unix_secs).map(|d| d.plaintext)
    }
}

/// Seconds since the Unix epoch, by the system clock.
pub(crate) fn unix_now() -> Result<u64, FernetError> {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).map_err(|_| FernetError::Clock)
}

/// The latest "now" a decryption accepts: beyond it the skew check would overflow.
const MAX_NOW: u64 = i64::MAX as u64;

/// Decrypts `token` with the first of `keys` that authenticates it.
///
/// The header is checked first (cheaply, without decoding the whole token) so that
/// truncated, mis-versioned, expired and future-dated tokens get their own errors. The
/// token is then decoded in one pass that feeds the first key's MAC (other keys check
/// theirs over the decoded ciphertext if it fails); only a token whose MAC verifies with
/// some key (compared in constant time) is decrypted.
pub(crate) fn decrypt_with(
    keys: &[FernetKey],
    token: &str,
    options: DecryptOptions,
    now: u64,
) -> Result<Decrypted, FernetError> {
    if now > MAX_NOW {
        return Err(FernetError::Clock);
    }
    let header = TokenHeader::parse(token)?;
    header.check_time(options.ttl.map(|ttl| ttl.as_secs()), now)?;
    let (key_index, plaintext) = codec::open(keys.iter().map(|key| &key.expanded), token, &header)?;
    Ok(Decrypted { plaintext: SecretBytes::new(plaintext), timestamp: header.timestamp, key_index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_base64_and_never_print() {
        let key = FernetKey::generate().unwrap();
        let exported = key.to_base64();
        assert_eq!(exported.len(), 44);
        let again = FernetKey::from_base64(&exported).unwrap();
        let token = key.encrypt(b"x").unwrap();
        assert_eq!(again.decrypt(&token, DecryptOptions::default()).unwrap().expose_secret(), b"x");
        assert!(!format!("{key:?}").contains(exported.expose_secret()));
    }

    #[test]
    fn bad_keys_are_rejected_without_echoing_them() {
        for bad in ["", "short", "!!!!", &URL_SAFE.encode([1u8; 31]), &URL_SAFE.encode([1u8; 33])] {
            let err = FernetKey::from_base64(&SecretString::from(bad)).unwrap_err();
            assert!(matches!(err, FernetError::InvalidKey { .. }), "{bad}: {err}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad));
            }
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = FernetKey::generate().unwrap().to_base64();
        let b = FernetKey::generate().unwrap().to_base64();
        assert_ne!(a, b);
    }

    #[test]
    fn a_clock_beyond_range_is_an_error_not_a_panic() {
        let key = FernetKey::generate().unwrap();
        let token = key.danger_encrypt_at_time(b"x", 1);
        assert!(matches!(
            key.danger_decrypt_at_time(&token, DecryptOptions::default(), u64::MAX),
            Err(FernetError::Clock)
        ));
    }
}
