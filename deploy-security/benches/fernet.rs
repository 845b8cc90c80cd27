//! Fernet encrypt + decrypt against the raw primitives it is made of (AES-128-CBC with
//! PKCS#7 and HMAC-SHA256 from the same RustCrypto crates), measured in the same run.
//! The ratio raw / fernet is how close the crate comes to the cost of the cryptography.
//! The `fernet` crate itself (the reference implementation the tests compare against)
//! runs beside them.
//!
//! With `FERNET_CALLGRIND=1` the binary skips criterion and runs each round trip once
//! (after a warm-up) in its own non-inlined function, for `valgrind --tool=callgrind`,
//! whose instruction counts do not depend on the load of the machine:
//!
//! ```text
//! cargo bench -p deploy-security --bench fernet --no-run   # prints the executable
//! FERNET_CALLGRIND=1 valgrind --tool=callgrind --callgrind-out-file=fernet.cg \
//!     --toggle-collect='fernet::callgrind_*' target/release/deps/fernet-<hash>
//! callgrind_annotate --inclusive=yes --threshold=100 fernet.cg | grep callgrind_
//! ```
//!
//! Valgrind does not emulate the SHA extensions, so under it `sha2` runs its portable
//! SHA-256, which then dominates every count; natively `sha2` uses the SHA instructions.
//! Compare the counts without `sha2::sha256::compress256` too (`callgrind_annotate`
//! without `--inclusive` lists it).
//!
//! With `FERNET_LOOP=1` it alternates short rounds of the three (so that all see the same
//! load) and prints the best round of each and the ratios.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
use std::hint::black_box;
use std::time::Duration;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use deploy_security::fernet::{DecryptOptions, FernetKey};
use hmac::Mac;

/// The sizes measured.
const SIZES: [(&str, usize); 2] = [("1KiB", 1024), ("1MiB", 1024 * 1024)];

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

/// Our encrypt + decrypt.
fn ours_round_trip(key: &FernetKey, plaintext: &[u8]) -> deploy_core::secret::SecretBytes {
    let token = key.encrypt(plaintext).unwrap();
    key.decrypt(&token, DecryptOptions::default()).unwrap()
}

/// The `fernet` crate's encrypt + decrypt.
fn crate_round_trip(key: &fernet::Fernet, plaintext: &[u8]) -> Vec<u8> {
    let token = key.encrypt(plaintext);
    key.decrypt(&token).unwrap()
}

/// The fixed inputs of one run.
struct Inputs {
    ours: FernetKey,
    reference: fernet::Fernet,
    signing: [u8; 16],
    encryption: [u8; 16],
    iv: [u8; 16],
    small: Vec<u8>,
    large: Vec<u8>,
}

impl Inputs {
    fn new() -> Self {
        let ours = FernetKey::generate().unwrap();
        let reference = fernet::Fernet::new(ours.to_base64().expose_secret()).unwrap();
        let raw = URL_SAFE.decode(ours.to_base64().expose_secret()).unwrap();
        let (signing, encryption) = raw.split_at(16);
        Self {
            ours,
            reference,
            signing: signing.try_into().unwrap(),
            encryption: encryption.try_into().unwrap(),
            iv: [3u8; 16],
            small: vec![0x5a; SIZES[0].1],
            large: vec![0x5a; SIZES[1].1],
        }
    }
}

fn bench(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut group = c.benchmark_group("fernet_round_trip");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (label, size) in SIZES {
        let plaintext = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("fernet", label), &plaintext, |b, p| {
            b.iter(|| ours_round_trip(&inputs.ours, black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("raw_aes_cbc_hmac", label), &plaintext, |b, p| {
            b.iter(|| raw_round_trip(&inputs.signing, &inputs.encryption, &inputs.iv, black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("fernet_crate", label), &plaintext, |b, p| {
            b.iter(|| crate_round_trip(&inputs.reference, black_box(p)))
        });
    }
    group.finish();
}

/// One function per measurement, each reading its own plaintext so that the linker
/// cannot fold them into one.
macro_rules! callgrind_fns {
    ($($name:ident: $field:ident => $run:expr;)*) => {$(
        #[inline(never)]
        fn $name(inputs: &Inputs) {
            let run = $run;
            black_box(run(inputs, black_box(inputs.$field.as_slice())));
        }
    )*};
}

callgrind_fns! {
    callgrind_ours_1kib: small => |i: &Inputs, p: &[u8]| ours_round_trip(&i.ours, p);
    callgrind_ours_1mib: large => |i: &Inputs, p: &[u8]| ours_round_trip(&i.ours, p);
    callgrind_raw_1kib: small => |i: &Inputs, p: &[u8]| raw_round_trip(&i.signing, &i.encryption, &i.iv, p);
    callgrind_raw_1mib: large => |i: &Inputs, p: &[u8]| raw_round_trip(&i.signing, &i.encryption, &i.iv, p);
    callgrind_crate_1kib: small => |i: &Inputs, p: &[u8]| crate_round_trip(&i.reference, p);
    callgrind_crate_1mib: large => |i: &Inputs, p: &[u8]| crate_round_trip(&i.reference, p);
}

/// One round trip of each kind and size, each in its own function, after one warm-up
/// round trip of each (so that lazily initialised state is not counted).
fn callgrind() {
    let inputs = Inputs::new();
    for p in [&inputs.small, &inputs.large] {
        black_box(ours_round_trip(&inputs.ours, p));
        black_box(raw_round_trip(&inputs.signing, &inputs.encryption, &inputs.iv, p));
        black_box(crate_round_trip(&inputs.reference, p));
    }
    callgrind_ours_1kib(&inputs);
    callgrind_raw_1kib(&inputs);
    callgrind_crate_1kib(&inputs);
    callgrind_ours_1mib(&inputs);
    callgrind_raw_1mib(&inputs);
    callgrind_crate_1mib(&inputs);
}

#[allow(missing_docs, reason = "generated by criterion_group!")]
mod group {
    use super::*;
    criterion_group!(benches, bench);
}

/// `FERNET_LOOP=1`: for each size, rounds of ours, the raw primitives and the `fernet`
/// crate in turn (so that all three see the same load), the best round of each, and the
/// ratios. On a loaded machine the best of many short rounds is steadier than
/// criterion's means.
fn run_loop() {
    let inputs = Inputs::new();
    for (label, plaintext, iterations) in [("1KiB", &inputs.small, 2_000), ("1MiB", &inputs.large, 2)] {
        let mut best = [Duration::MAX; 3];
        for _ in 0..200 {
            for (which, best) in best.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..iterations {
                    match which {
                        0 => drop(black_box(ours_round_trip(&inputs.ours, black_box(plaintext)))),
                        1 => drop(black_box(raw_round_trip(
                            &inputs.signing,
                            &inputs.encryption,
                            &inputs.iv,
                            black_box(plaintext),
                        ))),
                        _ => drop(black_box(crate_round_trip(&inputs.reference, black_box(plaintext)))),
                    }
                }
                *best = (*best).min(start.elapsed() / iterations);
            }
        }
        let [ours, raw, reference] = best;
        println!(
            "{label}: FernetKey {ours:?}, raw primitives {raw:?}, fernet crate {reference:?}; \
             raw/FernetKey {:.2}, raw/fernet crate {:.2}",
            raw.as_secs_f64() / ours.as_secs_f64(),
            raw.as_secs_f64() / reference.as_secs_f64(),
        );
    }
}

fn main() {
    if std::env::var_os("FERNET_CALLGRIND").is_some() {
        callgrind();
        return;
    }
    if std::env::var_os("FERNET_LOOP").is_some() {
        run_loop();
        return;
    }
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
