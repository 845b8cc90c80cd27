//! Secrets encrypted with Fernet, and a key rotation without downtime.
//!
//! The secrets live in `deploy-security`'s encrypted file store (one Fernet token per
//! version, atomic writes) in a temporary directory; nothing external is needed.
//!
//! 1. Two secrets are written under key 1; the files hold tokens, never the
//!    plaintext, and a secret prints as `[redacted]`.
//! 2. Rotation, in three steps: key 2 is put in front of key 1 (new writes use it,
//!    old tokens still decrypt), every stored version is re-encrypted under key 2,
//!    and key 1 is retired. A store that still has only key 1 can read nothing.
//! 3. Check-and-set: a writer that read version 1 cannot overwrite version 2.
//!
//! Run with `cargo run -p deploy-examples --example secrets_rotation`.

use std::path::{Path, PathBuf};

use deploy_core::secret::{PutOptions, SecretBytes, SecretError, SecretManager};
use deploy_examples::Error;
use deploy_security::fernet::{DecryptOptions, FernetKey, KeyRing};
use deploy_security::secrets::{FileSecretManager, FileStoreConfig};

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file of the store, concatenated: what an attacker with the disk would see.
fn raw_files(root: &Path) -> Result<String, Error> {
    let mut text = String::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                text.push_str(&String::from_utf8_lossy(&std::fs::read(&path)?));
            }
        }
    }
    Ok(text)
}

fn open(root: &Path, ring: KeyRing) -> Result<FileSecretManager, Error> {
    Ok(FileSecretManager::open(root, ring, FileStoreConfig::default())?)
}

async fn run() -> Result<(), Error> {
    let dir = TempDir(std::env::temp_dir().join(format!("deploy-rs-example-secrets-{}", std::process::id())));
    let root = dir.0.join("store");
    let key1 = FernetKey::generate()?;
    let key2 = FernetKey::generate()?;

    // 1. Secrets under key 1.
    let store = open(&root, KeyRing::new(key1.clone()))?;
    store
        .put("db/password", SecretBytes::from(b"correct horse battery staple".to_vec()), PutOptions::default())
        .await?;
    store.put("api/token", SecretBytes::from(b"tok_live_0123456789".to_vec()), PutOptions::default()).await?;
    let password = store.get("db/password").await?;
    println!("db/password version {} reads back as {:?}", password.version, password.value);
    let on_disk = raw_files(&root)?;
    let leaked = on_disk.contains("correct horse") || on_disk.contains("tok_live");
    println!("plaintext on disk: {leaked} ({} bytes of tokens and metadata)", on_disk.len());

    // A single token, to show which key of a ring decrypts it.
    let token = key1.encrypt(b"release signing passphrase")?;

    // 2. Rotation: key 2 in front, re-encrypt everything, retire key 1.
    let mut ring = KeyRing::new(key1.clone());
    ring.rotate(key2.clone());
    let store = open(&root, ring.clone())?;
    let during = store.get("db/password").await?;
    println!(
        "\nduring the rotation, old versions still read: {}",
        during.value.expose_secret() == password.value.expose_secret()
    );
    println!(
        "the old token is decrypted by key #{} of the ring (0 is the newest)",
        ring.decrypt(&token, DecryptOptions::default())?.key_index
    );
    let reencrypted = store.reencrypt_all().await?;
    let fresh_token = ring.reencrypt(&token, DecryptOptions::default())?;
    println!("re-encrypted {reencrypted} stored version(s) under key 2");
    ring.retire_older_than(1);
    println!(
        "after retiring key 1 the ring has {} key; the re-encrypted token is decrypted by key #{}",
        ring.len(),
        ring.decrypt(&fresh_token, DecryptOptions::default())?.key_index
    );

    let store = open(&root, ring)?;
    let after = store.get("db/password").await?;
    let old_only = open(&root, KeyRing::new(key1))?;
    let stale = old_only.get("db/password").await;
    println!("with key 2 only, db/password reads: {}", after.value.expose_secret() == password.value.expose_secret());
    match &stale {
        Ok(_) => println!("with key 1 only, db/password reads: yes (unexpected)"),
        Err(e) => println!("with key 1 only, db/password cannot be read: {e}"),
    }

    // 3. Check-and-set.
    let v2 = store
        .put(
            "db/password",
            SecretBytes::from(b"new password".to_vec()),
            PutOptions::default().expect_version(after.version),
        )
        .await?;
    let late = store
        .put(
            "db/password",
            SecretBytes::from(b"a late writer's password".to_vec()),
            PutOptions::default().expect_version(after.version),
        )
        .await;
    println!("\nrotated db/password to version {v2}");
    match &late {
        Err(SecretError::VersionConflict { expected, actual, .. }) => {
            println!("a writer that read version {expected} was refused: the key is at version {actual}");
        }
        Ok(v) => println!("a late writer overwrote it as version {v} (unexpected)"),
        Err(e) => println!("the late writer failed otherwise: {e}"),
    }
    let current = store.get("db/password").await?;

    let expected = !leaked
        && reencrypted >= 2
        && stale.is_err()
        && matches!(late, Err(SecretError::VersionConflict { .. }))
        && current.version == v2
        && current.value.expose_secret() == b"new password";
    if !expected {
        return Err("the secret store did not behave as the example expects".into());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run().await
}
