//! Tampered, truncated, expired, future-dated and foreign tokens, and key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "fernet")]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use deploy_security::fernet::{DecryptOptions, FernetError, FernetKey, KeyRing};
use std::time::Duration;

const T0: u64 = 1_700_000_000;

fn flip_byte(token: &str, at: usize) -> String {
    let mut bytes = URL_SAFE.decode(token).unwrap();
    bytes[at] ^= 0x01;
    URL_SAFE.encode(bytes)
}

#[test]
fn each_kind_of_bad_token_has_its_own_error() {
    let key = FernetKey::generate().unwrap();
    let token = key.danger_encrypt_at_time(b"the plaintext", T0);
    let none = DecryptOptions::default();
    let decoded_len = URL_SAFE.decode(&token).unwrap().len();

    // Tampered anywhere the MAC covers (time, IV, ciphertext) or in the MAC itself.
    for at in [5, 12, 30, decoded_len - 1] {
        let err = key.danger_decrypt_at_time(&flip_byte(&token, at), none, T0).unwrap_err();
        assert!(matches!(err, FernetError::Unauthenticated), "byte {at}: {err:?}");
    }
    // Made with another key.
    let other = FernetKey::generate().unwrap();
    assert!(matches!(other.danger_decrypt_at_time(&token, none, T0), Err(FernetError::Unauthenticated)));
    // Truncated, at any length below the smallest token.
    let bytes = URL_SAFE.decode(&token).unwrap();
    for len in [0, 1, 9, 25, 56, 57] {
        let cut = URL_SAFE.encode(&bytes[..len]);
        let err = key.danger_decrypt_at_time(&cut, none, T0).unwrap_err();
        assert!(matches!(err, FernetError::Truncated { .. }), "{len}: {err:?}");
    }
    // Cut by a few bytes: no longer a whole number of blocks.
    for len in [bytes.len() - 3, 72, 58] {
        let cut = URL_SAFE.encode(&bytes[..len]);
        assert!(matches!(key.danger_decrypt_at_time(&cut, none, T0), Err(FernetError::Malformed { .. })), "{len}");
    }
    // Expired, and dated in the future.
    let ttl = none.ttl(Duration::from_secs(60));
    assert!(key.danger_decrypt_at_time(&token, ttl, T0 + 60).is_ok());
    assert!(matches!(
        key.danger_decrypt_at_time(&token, ttl, T0 + 61),
        Err(FernetError::Expired { age_secs: 61, ttl_secs: 60 })
    ));
    assert!(key.danger_decrypt_at_time(&token, none, T0 - 60).is_ok());
    assert!(matches!(key.danger_decrypt_at_time(&token, none, T0 - 61), Err(FernetError::FromTheFuture { .. })));
    // Another version byte.
    let mut v2 = bytes.clone();
    v2[0] = 0x81;
    assert!(matches!(
        key.danger_decrypt_at_time(&URL_SAFE.encode(v2), none, T0),
        Err(FernetError::UnsupportedVersion { version: 0x81 })
    ));
    // Not base64 at all, in the header or only further on.
    assert!(matches!(key.danger_decrypt_at_time("***", none, T0), Err(FernetError::Encoding)));
    let mut late_garbage = token.clone();
    late_garbage.replace_range(60..61, "*");
    assert!(matches!(key.danger_decrypt_at_time(&late_garbage, none, T0), Err(FernetError::Encoding)));
}

#[test]
fn errors_say_nothing_of_key_or_plaintext() {
    let key = FernetKey::generate().unwrap();
    let token = key.danger_encrypt_at_time(b"hunter2-plaintext", T0);
    let exported = key.to_base64();
    let errors = [
        FernetKey::generate().unwrap().danger_decrypt_at_time(&token, DecryptOptions::default(), T0).unwrap_err(),
        key.danger_decrypt_at_time(&token, DecryptOptions::default().ttl(Duration::ZERO), T0 + 5).unwrap_err(),
    ];
    for err in errors {
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2") && !text.contains(exported.expose_secret()), "{text}");
    }
}

#[test]
fn rotation_encrypts_with_newest_decrypts_with_any_and_keeps_the_time() {
    let old = FernetKey::generate().unwrap();
    let new = FernetKey::generate().unwrap();
    let old_token = old.danger_encrypt_at_time(b"v1", T0);

    let mut ring = KeyRing::new(old.clone());
    ring.rotate(new.clone());
    assert_eq!(ring.len(), 2);
    let decrypted = ring.danger_decrypt_at_time(&old_token, DecryptOptions::default(), T0).unwrap();
    assert_eq!((decrypted.plaintext.expose_secret(), decrypted.key_index), (b"v1".as_slice(), 1));

    // New tokens are made by the newest key only.
    let fresh = ring.encrypt(b"v2").unwrap();
    assert!(new.decrypt(&fresh, DecryptOptions::default()).is_ok());
    assert!(matches!(old.decrypt(&fresh, DecryptOptions::default()), Err(FernetError::Unauthenticated)));

    // Re-encryption moves a token to the newest key and keeps its timestamp, so a TTL
    // still counts from the original write.
    let moved = ring.reencrypt(&old_token, DecryptOptions::default()).unwrap();
    let moved_back =
        new.danger_decrypt_at_time(&moved, DecryptOptions::default().ttl(Duration::from_secs(10)), T0 + 10);
    assert_eq!(moved_back.unwrap().expose_secret(), b"v1");
    assert!(matches!(
        new.danger_decrypt_at_time(&moved, DecryptOptions::default().ttl(Duration::from_secs(10)), T0 + 11),
        Err(FernetError::Expired { .. })
    ));

    // Retiring the old key makes its tokens undecryptable.
    assert_eq!(ring.retire_older_than(1), 1);
    assert!(matches!(ring.decrypt(&old_token, DecryptOptions::default()), Err(FernetError::Unauthenticated)));
    assert!(matches!(KeyRing::from_keys(Vec::new()), Err(FernetError::EmptyKeyRing)));
}

proptest::proptest! {
    #[test]
    fn any_plaintext_round_trips(plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let key = FernetKey::generate().unwrap();
        let token = key.encrypt(&plain).unwrap();
        let decrypted = key.decrypt(&token, DecryptOptions::default()).unwrap();
        proptest::prop_assert_eq!(decrypted.expose_secret(), plain.as_slice());
    }

    #[test]
    fn garbage_never_panics(token in "[A-Za-z0-9_=-]{0,200}") {
        let key = FernetKey::generate().unwrap();
        proptest::prop_assert!(key.decrypt(&token, DecryptOptions::default()).is_err());
    }
}
