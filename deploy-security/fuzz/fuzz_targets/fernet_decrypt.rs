//! Any string given to the token decryption: never a panic, never a plaintext unless
//! the token is authentic, and a token that decrypts round-trips.
#![no_main]

use std::sync::LazyLock;

use deploy_security::fernet::{DecryptOptions, FernetKey, KeyRing, TokenHeader};
use libfuzzer_sys::fuzz_target;

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let a = FernetKey::from_bytes(&[7u8; 32]).unwrap();
    let b = FernetKey::from_bytes(&[9u8; 32]).unwrap();
    KeyRing::from_keys(vec![a, b]).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = TokenHeader::parse(token);
    let now = data.len() as u64 * 1_000_003;
    let options = DecryptOptions::default().ttl(std::time::Duration::from_secs(u64::from(data.first().copied().unwrap_or(0))));
    if let Ok(decrypted) = RING.danger_decrypt_at_time(token, options, now) {
        // Only reachable with a forged MAC, which would be a finding.
        let again = RING.newest().danger_encrypt_at_time(decrypted.plaintext.expose_secret(), decrypted.timestamp);
        assert!(RING.danger_decrypt_at_time(&again, DecryptOptions::default(), decrypted.timestamp).is_ok());
    }
    // Tokens we make from the fuzz input always decrypt back to it.
    let token = RING.newest().danger_encrypt_at_time(data, 1_700_000_000);
    let plain = RING.danger_decrypt_at_time(&token, DecryptOptions::default(), 1_700_000_000).unwrap();
    assert_eq!(plain.plaintext.expose_secret(), data);
});
