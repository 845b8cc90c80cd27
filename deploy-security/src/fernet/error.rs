//! Why a Fernet operation failed.

/// A failure of a Fernet operation.
///
/// Each way a token can be wrong has its own variant, so that callers (and logs) can
/// tell a truncated token from an expired one from a forged one. No variant carries
/// the key, the plaintext or the token itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FernetError {
    /// The key is not 32 bytes of URL-safe base64.
    #[error("invalid fernet key: {reason}")]
    InvalidKey {
        /// What was wrong with it (never the key itself).
        reason: &'static str,
    },
    /// A key ring needs at least one key.
    #[error("a fernet key ring needs at least one key")]
    EmptyKeyRing,
    /// The operating system's random source failed.
    #[error("the operating system random source failed: {0}")]
    Random(#[source] deploy_core::error::BoxError),
    /// The system clock is before 1970 or beyond what a token can hold.
    #[error("the system clock is out of range for fernet timestamps")]
    Clock,
    /// The token is not URL-safe base64.
    #[error("token is not valid url-safe base64")]
    Encoding,
    /// The token is shorter than the smallest possible token.
    #[error("token is truncated: {len} bytes where at least {min} are needed")]
    Truncated {
        /// The decoded length.
        len: usize,
        /// The smallest valid decoded length.
        min: usize,
    },
    /// The first byte is not a known Fernet version.
    #[error("token has unsupported version byte {version:#04x}")]
    UnsupportedVersion {
        /// The byte found.
        version: u8,
    },
    /// The token has a valid header but an impossible shape.
    #[error("token is malformed: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token is older than the time-to-live the caller allowed.
    #[error("token expired: created {age_secs}s ago, time-to-live is {ttl_secs}s")]
    Expired {
        /// Seconds since the token was created.
        age_secs: u64,
        /// The time-to-live that was asked for.
        ttl_secs: u64,
    },
    /// The token is dated further in the future than the allowed clock skew.
    #[error("token is dated {ahead_secs}s in the future, beyond the {max_skew_secs}s clock skew allowed")]
    FromTheFuture {
        /// How far ahead of the clock it is dated.
        ahead_secs: u64,
        /// The allowed skew.
        max_skew_secs: u64,
    },
    /// No key verifies the token's HMAC: it was tampered with, or made with a key that
    /// is not in the ring. (The two cannot be told apart: that is the point of a MAC.)
    #[error("token signature does not verify with any key: tampered, or made with another key")]
    Unauthenticated,
    /// A key verifies the token's HMAC, but its plaintext padding is invalid: the token
    /// was made by a key holder with a faulty encoder (or a wrong IV).
    #[error("token is authentic but its ciphertext does not decrypt to valid padding")]
    InvalidPadding,
    /// The plaintext is not UTF-8 text.
    #[error("decrypted value is not valid UTF-8 text")]
    NotText,
}
