//! Fernet encrypt + decrypt against the raw primitives it is made of (AES-128-CBC with
//! PKCS#7 and HMAC-SHA256 from the same RustCrypto crates), measured in the same run.
//! The ratio raw / fernet is how close the crate comes to the cost of the cryptography.

use std::hint::black_box;
use std::time::Duration;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deploy_security::fernet::{DecryptOptions, FernetKey};
use hmac::Mac;

/// What the spec requires at the least: encrypt, MAC, verify the MAC, decrypt.
fn raw_round_trip(signing: &[u8; 16], encryption: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let ciphertext =
        cbc::Encryptor::<aes::Aes128>::new(encryption.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(signing).unwrap();
    mac.update(&ciphertext);
    let tag = mac.finalize().into_bytes();
    let mut verify = hmac::Hmac::<sha2::Sha256>::new_from_slice(signing).unwrap();
    verify.update(&ciphertext);
    verify.verify_slice(&tag).unwrap();
    cbc::Decryptor::<aes::Aes128>::new(encryption.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let key = FernetKey::generate().unwrap();
    let (signing, encryption, iv) = ([1u8; 16], [2u8; 16], [3u8; 16]);
    let mut group = c.benchmark_group("fernet_round_trip");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (label, size) in [("1KiB", 1024usize), ("1MiB", 1024 * 1024)] {
        let plaintext = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("fernet", label), &plaintext, |b, p| {
            b.iter(|| {
                let token = key.encrypt(black_box(p)).unwrap();
                key.decrypt(&token, DecryptOptions::default()).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("raw_aes_cbc_hmac", label), &plaintext, |b, p| {
            b.iter(|| raw_round_trip(&signing, &encryption, &iv, black_box(p)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
