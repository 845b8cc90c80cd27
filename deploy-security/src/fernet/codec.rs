//! Making and opening tokens directly on the primitives: AES-128-CBC (`aes`, `cbc`),
//! HMAC-SHA256 (`hmac`, `sha2`) and URL-safe base64 (`base64`).
//!
//! Outside the cryptography, the `fernet` crate spent its time on base64 (callgrind's
//! largest items after SHA-256) and on buffers: it decodes a token into one buffer,
//! copies it into a second, copies the ciphertext into a third and the signed part into
//! a fourth, and decrypts into a fifth; it builds a token by appending to a growing
//! vector and encodes it into a zeroed string. At 1 MiB those buffers are fresh memory
//! the kernel faults in, about 1 080 page faults per round trip (`perf stat`). Here each
//! direction is one pass through a small buffer on the stack:
//!
//! - sealing encrypts the plaintext 1.5 KiB at a time (CBC chains across the
//!   pieces), signs each piece and base64-encodes it straight onto the end of the token
//!   string, allocated once at its final length;
//! - opening decodes the token 1.5 KiB at a time, feeds each piece to the MAC of
//!   the first key and appends its ciphertext to the buffer that will hold the
//!   plaintext; only when a MAC verifies (in constant time) is that buffer decrypted, in
//!   place. Other keys of a ring check their MAC over that buffer if the first fails.
//!
//! The AES key schedule is expanded once per key. The tests compare every token with
//! the `fernet` crate and the specification's vectors, byte for byte.

use aes::Aes128;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::inout::InOutBuf;
use aes::cipher::typenum::U16;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::FernetError;
use super::token::{BLOCK, HEADER_LEN, TAG_LEN, TokenHeader, VERSION};

/// The HMAC-SHA256 block: shorter HMAC keys are padded with zeros to it.
const HMAC_BLOCK: usize = 64;
/// The bytes handled per step: a multiple of 3 (whole base64 groups) and of 16 (whole
/// AES blocks), small enough to stay in the L1 cache with its base64 text and to cost
/// little to zero on the stack for a small token.
const CHUNK: usize = 3 * 512;
/// The base64 text of a chunk.
const CHUNK_TEXT: usize = CHUNK / 3 * 4;

/// A key expanded for use: the AES-128 key schedule (zeroed on drop by `aes`'s
/// `zeroize` feature) and the signing key as an HMAC block.
#[derive(Clone)]
pub(crate) struct ExpandedKey {
    /// The signing key padded with zeros to the HMAC block, as HMAC itself pads it.
    signing: Zeroizing<[u8; HMAC_BLOCK]>,
    /// The encryption key's round keys.
    cipher: Aes128,
}

impl ExpandedKey {
    /// Expands a raw key: 16 bytes of signing key, then 16 of encryption key.
    pub(crate) fn new(raw: &[u8; 32]) -> Self {
        let mut signing = Zeroizing::new([0u8; HMAC_BLOCK]);
        signing[..16].copy_from_slice(&raw[..16]);
        let mut encryption = Zeroizing::new([0u8; 16]);
        encryption.copy_from_slice(&raw[16..]);
        Self { signing, cipher: Aes128::new(encryption.as_ref().into()) }
    }

    /// A fresh HMAC-SHA256 keyed with the signing key.
    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new(self.signing.as_ref().into())
    }

    /// The token for `plaintext` made at `timestamp` with `iv`, in URL-safe base64 with
    /// padding (as every Fernet implementation writes it).
    ///
    /// Fails only if the arithmetic of the text's length were wrong (it is not: the
    /// tests cover every boundary), with [`FernetError::Encoding`].
    pub(crate) fn seal(&self, plaintext: &[u8], timestamp: u64, iv: &[u8; 16]) -> Result<String, FernetError> {
        let ciphertext_len = (plaintext.len() / BLOCK + 1) * BLOCK;
        let token_len = HEADER_LEN + ciphertext_len + TAG_LEN;
        let mut text = TextWriter { text: vec![0u8; token_len.div_ceil(3) * 4], written: 0 };
        let mut mac = self.mac();
        let mut cbc = cbc::Encryptor::<&Aes128>::inner_iv_init(&self.cipher, iv.into());

        // `chunk[..pending]` is signed and encrypted but not yet encoded.
        let mut chunk = [0u8; CHUNK];
        chunk[0] = VERSION;
        chunk[1..9].copy_from_slice(&timestamp.to_be_bytes());
        chunk[9..HEADER_LEN].copy_from_slice(iv);
        mac.update(&chunk[..HEADER_LEN]);
        let mut pending = HEADER_LEN;

        // Whole blocks of plaintext, as many as fit in the chunk at a time.
        let mut rest = plaintext;
        loop {
            let room = (CHUNK - pending) / BLOCK * BLOCK;
            let take = room.min(rest.len() / BLOCK * BLOCK);
            if take == 0 {
                break;
            }
            let (piece, after) = rest.split_at(take);
            let out = &mut chunk[pending..pending + take];
            out.copy_from_slice(piece);
            encrypt_in_place(&mut cbc, out);
            mac.update(out);
            pending = text.encode_whole_groups(&mut chunk, pending + take)?;
            rest = after;
        }

        // The last block: what is left of the plaintext (0 to 15 bytes) and PKCS#7
        // padding (16 to 1 bytes of the padding length); then the tag. Encoding the
        // whole groups above left at most 2 bytes pending, so both fit.
        let last = &mut chunk[pending..pending + BLOCK];
        let (tail, padding) = last.split_at_mut(rest.len());
        tail.copy_from_slice(rest);
        padding.fill((BLOCK - rest.len()) as u8);
        encrypt_in_place(&mut cbc, last);
        mac.update(last);
        pending += BLOCK;
        chunk[pending..pending + TAG_LEN].copy_from_slice(&mac.finalize().into_bytes());
        pending += TAG_LEN;
        text.encode(&chunk[..pending])?;
        if text.written != text.text.len() {
            return Err(FernetError::Encoding);
        }
        String::from_utf8(text.text).map_err(|_| FernetError::Encoding)
    }

    /// Decrypts, in place, the ciphertext of a token whose MAC this key verified, and
    /// removes its padding. On a padding error the buffer is zeroed.
    fn decrypt_verified(&self, iv: &[u8; 16], mut buffer: Zeroizing<Vec<u8>>) -> Result<Vec<u8>, FernetError> {
        let len = cbc::Decryptor::<&Aes128>::inner_iv_init(&self.cipher, iv.into())
            .decrypt_padded_mut::<Pkcs7>(&mut buffer)
            .map_err(|_| FernetError::InvalidPadding)?
            .len();
        buffer.truncate(len);
        Ok(std::mem::take(&mut *buffer))
    }
}

/// Encrypts whole blocks in place, continuing the CBC chain of `cbc`.
fn encrypt_in_place(cbc: &mut cbc::Encryptor<&Aes128>, blocks: &mut [u8]) {
    let (blocks, _) = InOutBuf::from(blocks).into_chunks::<U16>();
    cbc.encrypt_blocks_inout_mut(blocks);
}

/// A token's base64 text, allocated at its final length and written a chunk at a time.
struct TextWriter {
    text: Vec<u8>,
    written: usize,
}

impl TextWriter {
    /// Writes the base64 of `bytes` (with padding, if it is not whole groups).
    fn encode(&mut self, bytes: &[u8]) -> Result<(), FernetError> {
        let out = self.text.get_mut(self.written..).ok_or(FernetError::Encoding)?;
        self.written += URL_SAFE.encode_slice(bytes, out).map_err(|_| FernetError::Encoding)?;
        Ok(())
    }

    /// Writes the base64 of the whole 3-byte groups of `chunk[..pending]`, moves the 0 to
    /// 2 bytes left over to the start of `chunk` and returns their number.
    fn encode_whole_groups(&mut self, chunk: &mut [u8; CHUNK], pending: usize) -> Result<usize, FernetError> {
        let whole = pending / 3 * 3;
        self.encode(&chunk[..whole])?;
        chunk.copy_within(whole..pending, 0);
        Ok(pending - whole)
    }
}

/// Opens a token whose header was read (and its time checked) as `header`: the token is
/// decoded once, its MAC checked in constant time with each of `keys` in turn, and its
/// ciphertext decrypted with the first key that verifies it. Returns that key's position
/// and the plaintext.
///
/// The first key's MAC is computed while decoding; the others' (a ring during rotation)
/// over the decoded ciphertext, only when the keys before them failed.
pub(crate) fn open<'k>(
    mut keys: impl Iterator<Item = &'k ExpandedKey>,
    token: &str,
    header: &TokenHeader,
) -> Result<(usize, Vec<u8>), FernetError> {
    let Some(first) = keys.next() else {
        return Err(FernetError::Unauthenticated);
    };
    let ciphertext_end = HEADER_LEN + header.ciphertext_len;
    let token_len = ciphertext_end + TAG_LEN;
    let mut mac = first.mac();
    // Holds the ciphertext, then the plaintext: zeroed unless it is returned.
    let mut buffer = Zeroizing::new(Vec::with_capacity(header.ciphertext_len));
    let mut tag = [0u8; TAG_LEN];

    let mut chunk = [0u8; CHUNK];
    let mut start = 0;
    for text in token.trim_end_matches('=').as_bytes().chunks(CHUNK_TEXT) {
        let len = URL_SAFE_NO_PAD.decode_slice(text, &mut chunk).map_err(|_| FernetError::Encoding)?;
        let end = start + len;
        if end > token_len {
            return Err(FernetError::Encoding);
        }
        let decoded = &chunk[..len];
        // The signed part: header and ciphertext.
        let signed = &decoded[..ciphertext_end.saturating_sub(start).min(len)];
        mac.update(signed);
        // The ciphertext.
        buffer.extend_from_slice(&signed[HEADER_LEN.saturating_sub(start).min(signed.len())..]);
        // The tag.
        let in_tag = &decoded[signed.len()..];
        let at = (start + signed.len()).saturating_sub(ciphertext_end);
        tag[at..at + in_tag.len()].copy_from_slice(in_tag);
        start = end;
    }
    if start != token_len || buffer.len() != header.ciphertext_len {
        return Err(FernetError::Encoding);
    }

    if verifies(mac, &tag) {
        return Ok((0, first.decrypt_verified(&header.iv, buffer)?));
    }
    let mut signed_header = [0u8; HEADER_LEN];
    signed_header[0] = VERSION;
    signed_header[1..9].copy_from_slice(&header.timestamp.to_be_bytes());
    signed_header[9..].copy_from_slice(&header.iv);
    for (index, key) in keys.enumerate() {
        let mut mac = key.mac();
        mac.update(&signed_header);
        mac.update(&buffer);
        if verifies(mac, &tag) {
            return Ok((index + 1, key.decrypt_verified(&header.iv, buffer)?));
        }
    }
    Err(FernetError::Unauthenticated)
}

/// Whether `mac` ends in `tag`, compared in constant time.
fn verifies(mac: Hmac<Sha256>, tag: &[u8; TAG_LEN]) -> bool {
    mac.finalize().into_bytes().ct_eq(tag).into()
}

#[cfg(test)]
mod tests {
    //! The new path against the `fernet` crate (the reference) and the specification's
    //! vectors: byte-identical tokens, decryption both ways, the same tokens refused.

    use std::time::Duration;

    use aes::cipher::{BlockEncryptMut, KeyIvInit};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE;
    use deploy_core::secret::SecretString;
    use proptest::prelude::*;

    use super::*;
    use crate::fernet::{DecryptOptions, FernetKey, KeyRing};

    const T0: u64 = 1_700_000_000;

    /// Sizes around every boundary: empty, one block, the first chunk (1.5 KiB less the
    /// 25-byte header: 1504 bytes of whole blocks), later chunks, a megabyte.
    const SIZES: &[usize] = &[
        0,
        1,
        15,
        16,
        17,
        31,
        32,
        33,
        47,
        48,
        49,
        1023,
        1024,
        1025,
        1487,
        1488,
        1489,
        1503,
        1504,
        1505,
        1519,
        1520,
        1521,
        1535,
        1536,
        1537,
        3007,
        3008,
        3009,
        3023,
        3024,
        3025,
        3039,
        3040,
        3041,
        3071,
        3072,
        3073,
        4608,
        6144,
        6145,
        65_536,
        1 << 20,
    ];

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
    }

    /// A key of ours and the same key in the `fernet` crate.
    fn key_pair() -> (FernetKey, fernet::Fernet) {
        let ours = FernetKey::generate().unwrap();
        let reference = fernet::Fernet::new(ours.to_base64().expose_secret()).unwrap();
        (ours, reference)
    }

    /// The token the `fernet` crate makes, and ours made with the same time and IV.
    fn both_tokens(ours: &FernetKey, reference: &fernet::Fernet, plain: &[u8], at: u64) -> (String, String) {
        let theirs = reference.encrypt_at_time(plain, at);
        let iv = TokenHeader::parse(&theirs).unwrap().iv;
        (theirs, ours.expanded.seal(plain, at, &iv).unwrap())
    }

    fn assert_compatible(ours: &FernetKey, reference: &fernet::Fernet, plain: &[u8], at: u64) {
        let (theirs, mine) = both_tokens(ours, reference, plain, at);
        assert_eq!(mine, theirs, "{} bytes: tokens differ", plain.len());
        // Decryption both ways, with fresh IVs.
        let mine = ours.danger_encrypt_at_time(plain, at);
        assert_eq!(reference.decrypt_at_time(&mine, Some(60), at).unwrap(), plain, "{} bytes", plain.len());
        let decrypted = ours.danger_decrypt_at_time(&theirs, DecryptOptions::default(), at).unwrap();
        assert_eq!(decrypted.expose_secret(), plain, "{} bytes", plain.len());
    }

    #[test]
    fn tokens_are_the_fernet_crates_byte_for_byte_at_every_boundary() {
        let (ours, reference) = key_pair();
        for &len in SIZES {
            assert_compatible(&ours, &reference, &plaintext(len), T0 + len as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_plaintexts_match_the_fernet_crate(
            plain in proptest::collection::vec(any::<u8>(), 0..10_000),
            at in 0u64..(1 << 40),
        ) {
            let (ours, reference) = key_pair();
            assert_compatible(&ours, &reference, &plain, at);
        }

        /// A token with one base64 symbol replaced (or cut short, or padded) is refused
        /// by us exactly when the `fernet` crate refuses it.
        #[test]
        fn we_refuse_what_the_fernet_crate_refuses(
            len in 0usize..5_000,
            position in any::<prop::sample::Index>(),
            symbol in prop::sample::select(b"AQgw_-=+/ .Zaz09".to_vec()),
            cut in 0usize..4,
        ) {
            let (ours, reference) = key_pair();
            let token = ours.danger_encrypt_at_time(&plaintext(len), T0);
            let mut bytes = token.into_bytes();
            let at = position.index(bytes.len());
            bytes[at] = symbol;
            bytes.truncate(bytes.len() - cut);
            let mangled = String::from_utf8(bytes).unwrap();
            let theirs = reference.decrypt_at_time(&mangled, None, T0);
            let mine = ours.danger_decrypt_at_time(&mangled, DecryptOptions::default(), T0);
            prop_assert_eq!(mine.is_ok(), theirs.is_ok(), "{}", mangled);
            if let (Ok(mine), Ok(theirs)) = (mine, theirs) {
                prop_assert_eq!(mine.expose_secret(), theirs.as_slice());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Tokens cut anywhere, or with symbols appended, past chunk boundaries: refused
        /// exactly when the `fernet` crate refuses them, and never a panic.
        #[test]
        fn cut_and_extended_tokens_agree_with_the_fernet_crate(
            len in 0usize..6_000,
            cut in 0usize..8_200,
            extra in "[A-Za-z0-9_=-]{0,9}",
        ) {
            let (ours, reference) = key_pair();
            let token = ours.danger_encrypt_at_time(&plaintext(len), T0);
            let mangled = format!("{}{extra}", &token[..token.len().saturating_sub(cut)]);
            let theirs = reference.decrypt_at_time(&mangled, None, T0);
            let mine = ours.danger_decrypt_at_time(&mangled, DecryptOptions::default(), T0);
            prop_assert_eq!(mine.is_ok(), theirs.is_ok(), "{}", mangled);
        }
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        #[serde(default)]
        desc: String,
        token: String,
        now: String,
        #[serde(default)]
        ttl_sec: u64,
        #[serde(default)]
        iv: Vec<u8>,
        #[serde(default)]
        src: String,
        secret: String,
    }

    fn vectors(json: &str) -> Vec<Vector> {
        let vectors: Vec<Vector> = serde_json::from_str(json).unwrap();
        assert!(!vectors.is_empty());
        vectors
    }

    fn unix(rfc3339: &str) -> u64 {
        u64::try_from(rfc3339.parse::<jiff::Timestamp>().unwrap().as_second()).unwrap()
    }

    fn vector_key(secret: &str) -> FernetKey {
        FernetKey::from_base64(&SecretString::from(secret)).unwrap()
    }

    #[test]
    fn spec_generate_vectors_byte_for_byte() {
        for v in vectors(include_str!("../../tests/data/fernet/generate.json")) {
            let iv: [u8; 16] = v.iv.as_slice().try_into().unwrap();
            assert_eq!(vector_key(&v.secret).expanded.seal(v.src.as_bytes(), unix(&v.now), &iv).unwrap(), v.token);
        }
    }

    #[test]
    fn spec_verify_vectors() {
        for v in vectors(include_str!("../../tests/data/fernet/verify.json")) {
            let options = DecryptOptions::default().ttl(Duration::from_secs(v.ttl_sec));
            let plain = vector_key(&v.secret).danger_decrypt_at_time(&v.token, options, unix(&v.now)).unwrap();
            assert_eq!(plain.expose_secret(), v.src.as_bytes());
        }
    }

    #[test]
    fn spec_invalid_vectors_each_with_its_error() {
        let all = vectors(include_str!("../../tests/data/fernet/invalid.json"));
        assert_eq!(all.len(), 8);
        for v in all {
            let options = DecryptOptions::default().ttl(Duration::from_secs(v.ttl_sec));
            let err = vector_key(&v.secret).danger_decrypt_at_time(&v.token, options, unix(&v.now)).unwrap_err();
            let expected = match v.desc.as_str() {
                "incorrect mac" => matches!(err, FernetError::Unauthenticated),
                "too short" => matches!(err, FernetError::Truncated { .. }),
                "invalid base64" => matches!(err, FernetError::Encoding),
                "payload size not multiple of block size" => matches!(err, FernetError::Malformed { .. }),
                "payload padding error" | "incorrect IV (causes padding error)" => {
                    matches!(err, FernetError::InvalidPadding)
                }
                "far-future TS (unacceptable clock skew)" => matches!(err, FernetError::FromTheFuture { .. }),
                "expired TTL" => matches!(err, FernetError::Expired { .. }),
                other => panic!("unknown vector {other:?}"),
            };
            assert!(expected, "{}: got {err:?}", v.desc);
            let reference = fernet::Fernet::new(&v.secret).unwrap();
            assert!(reference.decrypt_at_time(&v.token, Some(v.ttl_sec), unix(&v.now)).is_err(), "{}", v.desc);
        }
    }

    fn flip(token: &str, at: usize) -> String {
        let mut bytes = URL_SAFE.decode(token).unwrap();
        bytes[at] ^= 0x01;
        URL_SAFE.encode(bytes)
    }

    /// Tampering anywhere (header, first and later chunks of ciphertext, the tag), a
    /// wrong key, expiry, skew and bad symbols far into a large token: each refused with
    /// its own error.
    #[test]
    fn large_tokens_tampered_foreign_or_expired_are_refused_with_typed_errors() {
        let (key, _) = key_pair();
        let none = DecryptOptions::default();
        for len in [0, 17, 5_000, 1 << 20] {
            let token = key.danger_encrypt_at_time(&plaintext(len), T0);
            let decoded_len = URL_SAFE.decode(&token).unwrap().len();
            for at in [8, 9, 24, 25, decoded_len / 2, decoded_len - 33, decoded_len - 32, decoded_len - 1] {
                let err = key.danger_decrypt_at_time(&flip(&token, at), none, T0).unwrap_err();
                assert!(matches!(err, FernetError::Unauthenticated), "{len} bytes, byte {at}: {err:?}");
            }
            let err = key.danger_decrypt_at_time(&flip(&token, 0), none, T0).unwrap_err();
            assert!(matches!(err, FernetError::UnsupportedVersion { version: 0x81 }), "{err:?}");
            let (other, _) = key_pair();
            assert!(matches!(other.danger_decrypt_at_time(&token, none, T0), Err(FernetError::Unauthenticated)));

            let ttl = none.ttl(Duration::from_secs(60));
            assert!(key.danger_decrypt_at_time(&token, ttl, T0 + 60).is_ok());
            let err = key.danger_decrypt_at_time(&token, ttl, T0 + 61).unwrap_err();
            assert!(matches!(err, FernetError::Expired { age_secs: 61, ttl_secs: 60 }), "{err:?}");
            assert!(key.danger_decrypt_at_time(&token, none, T0 - 60).is_ok());
            let err = key.danger_decrypt_at_time(&token, none, T0 - 61).unwrap_err();
            assert!(matches!(err, FernetError::FromTheFuture { ahead_secs: 61, .. }), "{err:?}");

            let mut late = token.clone();
            let at = token.len() - 10;
            late.replace_range(at..at + 1, "*");
            assert!(matches!(key.danger_decrypt_at_time(&late, none, T0), Err(FernetError::Encoding)));
        }
    }

    /// An authentic token (its MAC verifies) whose plaintext padding is wrong.
    #[test]
    fn authentic_tokens_with_bad_padding_are_told_apart_and_not_returned() {
        let raw = [7u8; 32];
        let key = FernetKey::from_bytes(&raw).unwrap();
        let mut token = vec![VERSION];
        token.extend_from_slice(&T0.to_be_bytes());
        token.extend_from_slice(&[9u8; 16]);
        let mut ciphertext = plaintext(4 * CHUNK);
        let blocks = ciphertext.len() / BLOCK;
        cbc::Encryptor::<Aes128>::new((&raw[16..]).into(), (&[9u8; 16]).into())
            .encrypt_blocks_mut(InOutBuf::from(ciphertext.as_mut_slice()).into_chunks::<U16>().0.get_out());
        assert_eq!(blocks * BLOCK, ciphertext.len());
        token.extend_from_slice(&ciphertext);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&raw[..16]).unwrap();
        mac.update(&token);
        token.extend_from_slice(&mac.finalize().into_bytes());
        let token = URL_SAFE.encode(token);
        let err = key.danger_decrypt_at_time(&token, DecryptOptions::default(), T0).unwrap_err();
        assert!(matches!(err, FernetError::InvalidPadding), "{err:?}");
        let (other, _) = key_pair();
        let ring = KeyRing::from_keys(vec![other, key]).unwrap();
        assert!(matches!(
            ring.danger_decrypt_at_time(&token, DecryptOptions::default(), T0),
            Err(FernetError::InvalidPadding)
        ));
    }

    #[test]
    fn a_ring_finds_the_key_that_made_a_large_token() {
        let keys: Vec<FernetKey> = (0..3).map(|_| FernetKey::generate().unwrap()).collect();
        let ring = KeyRing::from_keys(keys.clone()).unwrap();
        let plain = plaintext(1 << 20);
        for (index, key) in keys.iter().enumerate() {
            let token = key.danger_encrypt_at_time(&plain, T0);
            let decrypted = ring.danger_decrypt_at_time(&token, DecryptOptions::default(), T0).unwrap();
            assert_eq!((decrypted.key_index, decrypted.timestamp), (index, T0));
            assert_eq!(decrypted.plaintext.expose_secret(), plain.as_slice());
        }
    }
}
