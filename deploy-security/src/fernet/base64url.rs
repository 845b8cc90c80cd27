//! URL-safe base64 of tokens, into buffers of their final size.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

/// `bytes` in URL-safe base64 with `=` padding.
pub(crate) fn encode_padded(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// Decodes unpadded URL-safe base64 into `out`, returning the decoded length, or `None`
/// when `text` is not canonical base64 (a symbol outside the alphabet, a length of 1
/// modulo 4, non-zero trailing bits) or does not fit.
pub(crate) fn decode_unpadded(text: &[u8], out: &mut [u8]) -> Option<usize> {
    URL_SAFE_NO_PAD.decode_slice(text, out).ok()
}
