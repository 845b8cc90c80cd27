//! Crash safety of the encrypted file store: a writer process is killed (SIGKILL) at
//! random moments while it writes, again and again; after each kill every read must
//! give a complete version whose content matches its version number.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "file")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use deploy_core::secret::{PutOptions, SecretBytes, SecretManager, SecretString};
use deploy_security::fernet::{FernetKey, KeyRing};
use deploy_security::secrets::{FileSecretManager, FileStoreConfig};

const STORE_DIR: &str = "DEPLOY_SECURITY_CRASH_STORE";
const STORE_KEY: &str = "DEPLOY_SECURITY_CRASH_KEY";
const VALUE_LEN: usize = 64 * 1024;

/// The value of version `n`: large, so that a kill often lands mid-write, and fully
/// determined by `n`, so a reader can tell a torn value from a whole one.
fn value_for(n: u64) -> Vec<u8> {
    let mut value = n.to_be_bytes().to_vec();
    value.extend((0..VALUE_LEN).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8));
    value
}

fn open(dir: &Path, key: &str) -> FileSecretManager {
    let key = FernetKey::from_base64(&SecretString::from(key)).unwrap();
    FileSecretManager::open(dir, KeyRing::new(key), FileStoreConfig::default().max_versions(3)).unwrap()
}

/// Not a test on its own: when the parent test runs this binary with the store in the
/// environment, it becomes the writer and loops until it is killed.
#[tokio::test]
async fn crash_writer_child() {
    let (Ok(dir), Ok(key)) = (std::env::var(STORE_DIR), std::env::var(STORE_KEY)) else { return };
    let store = open(Path::new(&dir), &key);
    loop {
        let current = store.get("app/blob").await.map_or(0, |s| s.version);
        let next = current + 1;
        store
            .put("app/blob", SecretBytes::from(value_for(next)), PutOptions::default().expect_version(current))
            .await
            .unwrap();
        store
            .put(&format!("app/k{}", next % 5), SecretBytes::from(value_for(next)), PutOptions::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_writer_mid_write_never_tears_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetKey::generate().unwrap().to_base64();
    let exe = std::env::current_exe().unwrap();
    let mut last_version = 0;
    let rounds = 20;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_writer_child", "--nocapture", "--test-threads=1"])
            .env(STORE_DIR, dir.path())
            .env(STORE_KEY, key.expose_secret())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a different point of the write loop each round.
        tokio::time::sleep(Duration::from_millis(150 + (round * 37) % 250)).await;
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer must have been killed, not have finished");

        let store = open(dir.path(), key.expose_secret());
        for name in store.list().await.unwrap() {
            let secret = store.get(&name).await.unwrap();
            let stored_n = u64::from_be_bytes(secret.value.expose_secret()[..8].try_into().unwrap());
            assert_eq!(secret.value.expose_secret(), value_for(stored_n).as_slice(), "{name} is torn in round {round}");
            if name == "app/blob" {
                assert_eq!(stored_n, secret.version, "value and version of one write belong together");
                assert!(secret.version >= last_version, "versions never go back");
                last_version = secret.version;
            }
        }
    }
    assert!(last_version > 0, "the writer never completed a write: the test proved nothing");
    // Temp files of killed writes may remain; they never show up as keys.
    let listed = open(dir.path(), key.expose_secret()).list().await.unwrap();
    assert!(listed.iter().all(|k| k == "app/blob" || k.starts_with("app/k")), "{listed:?}");
}
