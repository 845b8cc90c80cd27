//! The structure of a Fernet token, read without any key.
//!
//! `0x80 ‖ timestamp (8, big-endian) ‖ IV (16) ‖ ciphertext (16·n, n ≥ 1) ‖ HMAC-SHA256 (32)`,
//! URL-safe base64 encoded (Fernet spec).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::FernetError;

/// The only Fernet version there is.
pub(crate) const VERSION: u8 = 0x80;
/// Version, timestamp and IV.
pub(crate) const HEADER_LEN: usize = 1 + 8 + 16;
/// The HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;
/// The AES block: the ciphertext is a non-zero multiple of it.
pub(crate) const BLOCK: usize = 16;
/// The smallest token: a header, one block of ciphertext and the tag.
pub(crate) const MIN_LEN: usize = HEADER_LEN + BLOCK + TAG_LEN;
/// How far in the future a token may be dated (the spec's and every implementation's 60 s).
pub(crate) const MAX_CLOCK_SKEW_SECS: u64 = 60;

/// What a token says about itself before any key is used: enough to reject truncated,
/// mis-versioned, expired and future-dated tokens with distinct errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHeader {
    /// When the token was made, in seconds since the Unix epoch.
    pub timestamp: u64,
    /// The initialisation vector.
    pub iv: [u8; 16],
    /// The length of the ciphertext in bytes.
    pub ciphertext_len: usize,
}

impl TokenHeader {
    /// Reads a token's header, decoding only its first 36 base64 characters, and checks
    /// its length. The rest of the encoding is checked when the token is decrypted.
    ///
    /// ```
    /// use deploy_security::fernet::{FernetError, TokenHeader};
    /// assert!(matches!(TokenHeader::parse("gAAAAA"), Err(FernetError::Truncated { .. })));
    /// ```
    pub fn parse(token: &str) -> Result<Self, FernetError> {
        let unpadded = token.trim_end_matches('=');
        let len = decoded_len(unpadded.len()).ok_or(FernetError::Encoding)?;
        // 36 characters decode to 27 bytes: the 25-byte header and 2 of ciphertext.
        // Room for the header and the tag but no ciphertext at all: truncated. (Some
        // ciphertext that is not whole blocks is malformed, below.)
        let prefix = unpadded.get(..36);
        let Some(prefix) = prefix.filter(|_| len > HEADER_LEN + TAG_LEN) else {
            // Too short to be a token; still say "encoding" if it is not even base64.
            return match URL_SAFE_NO_PAD.decode(unpadded) {
                Ok(bytes) if bytes.first().is_some_and(|v| *v != VERSION) => {
                    Err(FernetError::UnsupportedVersion { version: bytes[0] })
                }
                Ok(bytes) => Err(FernetError::Truncated { len: bytes.len(), min: MIN_LEN }),
                Err(_) => Err(FernetError::Encoding),
            };
        };
        let mut head = [0u8; 27];
        URL_SAFE_NO_PAD.decode_slice(prefix, &mut head).map_err(|_| FernetError::Encoding)?;
        if head[0] != VERSION {
            return Err(FernetError::UnsupportedVersion { version: head[0] });
        }
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&head[1..9]);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&head[9..25]);
        let ciphertext_len = len - HEADER_LEN - TAG_LEN;
        if !ciphertext_len.is_multiple_of(BLOCK) {
            return Err(FernetError::Malformed { reason: "ciphertext is not a whole number of AES blocks" });
        }
        Ok(Self { timestamp: u64::from_be_bytes(timestamp), iv, ciphertext_len })
    }

    /// Checks the timestamp against `now`: not older than `ttl_secs` (when given), not
    /// dated more than the allowed clock skew ahead. Never overflows.
    pub fn check_time(&self, ttl_secs: Option<u64>, now: u64) -> Result<(), FernetError> {
        if let Some(ttl_secs) = ttl_secs
            && self.timestamp.saturating_add(ttl_secs) < now
        {
            return Err(FernetError::Expired { age_secs: now - self.timestamp, ttl_secs });
        }
        if now.saturating_add(MAX_CLOCK_SKEW_SECS) < self.timestamp {
            return Err(FernetError::FromTheFuture {
                ahead_secs: self.timestamp - now,
                max_skew_secs: MAX_CLOCK_SKEW_SECS,
            });
        }
        Ok(())
    }
}

/// The number of bytes `chars` unpadded base64 characters decode to, or `None` for a
/// length no base64 text can have.
fn decoded_len(chars: usize) -> Option<usize> {
    match chars % 4 {
        1 => None,
        rest => Some(chars / 4 * 3 + rest.saturating_sub(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_lengths_match_the_encoder() {
        for n in 0..64usize {
            let encoded = URL_SAFE_NO_PAD.encode(vec![7u8; n]);
            assert_eq!(decoded_len(encoded.len()), Some(n), "{n}");
        }
        assert_eq!(decoded_len(5), None);
    }

    #[test]
    fn expiry_and_skew_never_overflow() {
        let header = TokenHeader { timestamp: u64::MAX, iv: [0; 16], ciphertext_len: 16 };
        assert!(matches!(header.check_time(Some(u64::MAX), 10), Err(FernetError::FromTheFuture { .. })));
        let header = TokenHeader { timestamp: 0, iv: [0; 16], ciphertext_len: 16 };
        assert!(matches!(header.check_time(Some(5), u64::MAX), Err(FernetError::Expired { ttl_secs: 5, .. })));
        assert!(header.check_time(None, u64::MAX).is_ok());
    }
}
