//! URL-safe base64 for tokens, faster than the `base64` crate's general-purpose engine
//! (which the profile showed as the largest cost outside the cryptography).
//!
//! Whole groups (3 bytes, 4 symbols) go through lookup tables: one of 4096 symbol pairs
//! to encode 12 bits at a time, four of 256 pre-shifted values to decode. The last,
//! partial group is left to the `base64` crate, which decides what is canonical (padding,
//! trailing bits), so that the same texts are accepted and refused as before. Tokens are
//! public, so table lookups indexed by them leak nothing.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

/// The URL-safe alphabet (RFC 4648 §5).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The two symbols of every 12-bit value, first symbol in the low byte.
static PAIRS: [u16; 4096] = {
    let mut table = [0u16; 4096];
    let mut i = 0;
    while i < 4096 {
        table[i] = ALPHABET[i >> 6] as u16 | (ALPHABET[i & 63] as u16) << 8;
        i += 1;
    }
    table
};

/// Set in a decoded value when a symbol was outside the alphabet.
const INVALID: u32 = 0xff00_0000;

/// For each position in a group of four symbols, each symbol's 6 bits shifted into
/// place in the group's 24 bits, or [`INVALID`].
static SYMBOLS: [[u32; 256]; 4] = {
    let mut tables = [[INVALID; 256]; 4];
    let mut value = 0;
    while value < 64 {
        let symbol = ALPHABET[value] as usize;
        let mut position = 0;
        while position < 4 {
            tables[position][symbol] = (value as u32) << (18 - 6 * position);
            position += 1;
        }
        value += 1;
    }
    tables
};

/// The length of the padded base64 text of `len` bytes.
pub(crate) const fn padded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// Writes the padded base64 of `bytes` into `text`, which must be
/// [`padded_len`]`(bytes.len())` long; `false` if it is not.
pub(crate) fn encode_padded(bytes: &[u8], text: &mut [u8]) -> bool {
    let (groups, tail) = bytes.as_chunks::<3>();
    let Some((whole, rest)) = text.split_at_mut_checked(groups.len() * 4) else {
        return false;
    };
    for (group, symbols) in groups.iter().zip(whole.as_chunks_mut::<4>().0) {
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        let pair = |twelve: u32| PAIRS[(twelve & 0xfff) as usize];
        *symbols = (u32::from(pair(bits >> 12)) | u32::from(pair(bits)) << 16).to_le_bytes();
    }
    URL_SAFE.encode_slice(tail, rest).is_ok_and(|written| written == rest.len())
}

/// Decodes unpadded base64 `text` into the start of `out`, returning the number of
/// bytes, or `None` if `text` is not canonical unpadded URL-safe base64 (exactly as the
/// `base64` crate's `URL_SAFE_NO_PAD` decides) or `out` is too short.
pub(crate) fn decode_unpadded(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let (groups, tail) = text.as_chunks::<4>();
    let (whole, rest) = out.split_at_mut_checked(groups.len() * 3)?;
    let mut seen = 0;
    for (group, bytes) in groups.iter().zip(whole.as_chunks_mut::<3>().0) {
        let bits = SYMBOLS[0][usize::from(group[0])]
            | SYMBOLS[1][usize::from(group[1])]
            | SYMBOLS[2][usize::from(group[2])]
            | SYMBOLS[3][usize::from(group[3])];
        seen |= bits;
        let [_, a, b, c] = bits.to_be_bytes();
        *bytes = [a, b, c];
    }
    if seen & INVALID != 0 {
        return None;
    }
    let tail_len = if tail.is_empty() { 0 } else { URL_SAFE_NO_PAD.decode_slice(tail, rest).ok()? };
    Some(whole.len() + tail_len)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_length_and_every_byte_value_encode_as_the_base64_crate_does() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..bytes.len() {
            let mut text = vec![0u8; padded_len(len)];
            assert!(encode_padded(&bytes[..len], &mut text));
            assert_eq!(text, URL_SAFE.encode(&bytes[..len]).as_bytes(), "{len}");
            let unpadded = URL_SAFE_NO_PAD.encode(&bytes[..len]);
            let mut out = vec![0u8; len];
            assert_eq!(decode_unpadded(unpadded.as_bytes(), &mut out), Some(len));
            assert_eq!(out, &bytes[..len]);
        }
        assert!(!encode_padded(b"abcd", &mut [0u8; 7]));
        assert_eq!(decode_unpadded(b"QUJD", &mut [0u8; 2]), None);
    }

    proptest! {
        /// Any text, valid or not (symbols of both alphabets, padding, junk), decodes
        /// exactly as the `base64` crate decodes it, or is refused exactly when it is.
        #[test]
        fn decoding_agrees_with_the_base64_crate(
            text in proptest::collection::vec(prop::sample::select(b"AZaz09-_+/=. \nQg".to_vec()), 0..64),
            valid in proptest::collection::vec(any::<u8>(), 0..64),
            at in any::<prop::sample::Index>(),
            symbol in any::<u8>(),
        ) {
            let mut mutated = URL_SAFE_NO_PAD.encode(&valid).into_bytes();
            if !mutated.is_empty() {
                let i = at.index(mutated.len());
                mutated[i] = symbol;
            }
            for input in [text, mutated] {
                let mut ours = vec![0u8; input.len()];
                let mut theirs = vec![0u8; input.len()];
                let expected = URL_SAFE_NO_PAD.decode_slice(&input, &mut theirs).ok();
                prop_assert_eq!(decode_unpadded(&input, &mut ours), expected);
                if let Some(len) = expected {
                    prop_assert_eq!(&ours[..len], &theirs[..len]);
                }
            }
        }
    }
}
