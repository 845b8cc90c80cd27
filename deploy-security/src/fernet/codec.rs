//! Making and opening tokens directly on the primitives: AES-128-CBC (`aes`, `cbc`),
//! HMAC-SHA256 (`hmac`, `sha2`) and URL-safe base64.
//!
//! The `fernet` crate spends two thirds of a round trip outside the cryptography: it
//! decodes the token into one buffer, copies it into a second, copies the ciphertext
//! into a third and the signed part into a fourth, decrypts into a fifth; it builds the
//! token by appending to a growing vector and encodes it after zeroing its output. Here
//! a token is made in one buffer of its final size (plaintext copied in, encrypted in
//! place, signed, base64-encoded once into a string of its final size) and opened from
//! one buffer (decoded once, the MAC verified in constant time over it, then decrypted
//! straight into the plaintext's buffer). The key schedule is expanded once per key.
//!
//! The tests compare every token with the `fernet` crate and the specification's
//! vectors, byte for byte.

use aes::Aes128;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::inout::InOutBuf;
use aes::cipher::typenum::U16;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::FernetError;
use super::base64url;
use super::token::{BLOCK, HEADER_LEN, TAG_LEN, TokenHeader, VERSION};

/// The HMAC-SHA256 block: shorter HMAC keys are padded with zeros to it.
const HMAC_BLOCK: usize = 64;

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
        let signed_len = HEADER_LEN + ciphertext_len;
        let mut token = vec![0u8; signed_len + TAG_LEN];
        token[0] = VERSION;
        token[1..9].copy_from_slice(&timestamp.to_be_bytes());
        token[9..HEADER_LEN].copy_from_slice(iv);

        // PKCS#7: the plaintext, then `pad` bytes of value `pad` (1 to 16).
        let body = &mut token[HEADER_LEN..signed_len];
        let (message, padding) = body.split_at_mut(plaintext.len());
        message.copy_from_slice(plaintext);
        padding.fill((ciphertext_len - plaintext.len()) as u8);
        let (blocks, _) = InOutBuf::from(body).into_chunks::<U16>();
        cbc::Encryptor::<&Aes128>::inner_iv_init(&self.cipher, iv.into()).encrypt_blocks_inout_mut(blocks);

        let (signed, tag) = token.split_at_mut(signed_len);
        let mut mac = self.mac();
        mac.update(signed);
        tag.copy_from_slice(&mac.finalize().into_bytes());
        base64url::encode_padded(&token)
    }

    /// Whether this key's HMAC of `signed` is `tag`, compared in constant time.
    pub(crate) fn verifies(&self, signed: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(signed);
        mac.finalize().into_bytes().ct_eq(tag).into()
    }

    /// Decrypts the ciphertext of an authenticated token (whose MAC this key verified)
    /// and removes its padding.
    pub(crate) fn decrypt_verified(&self, iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, FernetError> {
        // Zeroed if the padding turns out to be wrong: it holds a decryption then.
        let mut plaintext = Zeroizing::new(vec![0u8; ciphertext.len()]);
        let len = cbc::Decryptor::<&Aes128>::inner_iv_init(&self.cipher, iv.into())
            .decrypt_padded_b2b_mut::<Pkcs7>(ciphertext, &mut plaintext)
            .map_err(|_| FernetError::InvalidPadding)?
            .len();
        plaintext.truncate(len);
        Ok(std::mem::take(&mut *plaintext))
    }
}

/// Decodes a whole token whose header was read as `header`: version, timestamp, IV,
/// ciphertext and tag, in one buffer of exactly their length.
pub(crate) fn decode(token: &str, header: &TokenHeader) -> Result<Vec<u8>, FernetError> {
    let len = HEADER_LEN + header.ciphertext_len + TAG_LEN;
    let mut bytes = vec![0u8; len];
    match base64url::decode_unpadded(token.trim_end_matches('=').as_bytes(), &mut bytes) {
        Some(decoded) if decoded == len => Ok(bytes),
        _ => Err(FernetError::Encoding),
    }
}
