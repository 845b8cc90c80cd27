//! Making and opening tokens directly on the primitives: AES-128-CBC (`aes`, `cbc`),
//! HMAC-SHA256 (`hmac`, `sha2`) and URL-safe base64 (`base64`).
//!
//! Profiled with callgrind, the `fernet` crate spent its time outside the cryptography
//! on base64 and on copies: it decodes a token into one buffer, copies it into a second,
//! copies the ciphertext into a third and the signed part into a fourth, and decrypts
//! into a fifth; it builds a token by appending to a growing vector and encodes it into
//! a zeroed string. Each of those megabyte-sized buffers is fresh memory the kernel has
//! to fault in. Here each direction is one pass through a small buffer on the stack:
//!
//! - sealing encrypts the plaintext a few kilobytes at a time (CBC chains across the
//!   pieces), signs each piece and base64-encodes it straight onto the end of the token
//!   string, allocated once at its final length;
//! - opening decodes the token a few kilobytes at a time, feeds each piece to the MAC of
//!   every candidate key and appends its ciphertext to the buffer that will hold the
//!   plaintext; only when a MAC verifies (in constant time) is that buffer decrypted, in
//!   place.
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
/// AES blocks), small enough to stay in the L1 cache with its base64 text.
const CHUNK: usize = 3 * 1024;
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
    pub(crate) fn seal(&self, plaintext: &[u8], timestamp: u64, iv: &[u8; 16]) -> String {
        let ciphertext_len = (plaintext.len() / BLOCK + 1) * BLOCK;
        let token_len = HEADER_LEN + ciphertext_len + TAG_LEN;
        let mut text = String::with_capacity(token_len.div_ceil(3) * 4);
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
            pending = encode_whole_groups(&mut chunk, pending + take, &mut text);
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
        URL_SAFE.encode_string(&chunk[..pending], &mut text);
        text
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

/// Appends the base64 of the whole 3-byte groups of `chunk[..pending]` to `text`, moves
/// the 0 to 2 bytes left over to the start of `chunk` and returns their number.
fn encode_whole_groups(chunk: &mut [u8; CHUNK], pending: usize, text: &mut String) -> usize {
    let whole = pending / 3 * 3;
    URL_SAFE.encode_string(&chunk[..whole], text);
    chunk.copy_within(whole..pending, 0);
    pending - whole
}

/// Opens a token whose header was read (and its time checked) as `header`: the token is
/// decoded once, its MAC checked with each of `keys` in constant time, and its ciphertext
/// decrypted with the first key that verifies it. Returns that key's position and the
/// plaintext.
pub(crate) fn open<'k>(
    keys: impl Iterator<Item = &'k ExpandedKey> + Clone,
    token: &str,
    header: &TokenHeader,
) -> Result<(usize, Vec<u8>), FernetError> {
    let ciphertext_end = HEADER_LEN + header.ciphertext_len;
    let token_len = ciphertext_end + TAG_LEN;
    let mut macs: Vec<Hmac<Sha256>> = keys.clone().map(ExpandedKey::mac).collect();
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
        macs.iter_mut().for_each(|mac| mac.update(signed));
        // The ciphertext.
        buffer.extend_from_slice(&signed[HEADER_LEN.saturating_sub(start).min(signed.len())..]);
        // The tag.
        let in_tag = &decoded[signed.len()..];
        let at = (start + signed.len()).saturating_sub(ciphertext_end);
        tag[at..at + in_tag.len()].copy_from_slice(in_tag);
        start = end;
    }
    if start != token_len {
        return Err(FernetError::Encoding);
    }

    let verified = macs.into_iter().position(|mac| bool::from(mac.finalize().into_bytes().ct_eq(&tag)));
    match verified.and_then(|index| Some((index, keys.clone().nth(index)?))) {
        Some((index, key)) => Ok((index, key.decrypt_verified(&header.iv, buffer)?)),
        None => Err(FernetError::Unauthenticated),
    }
}
