//! Crash safety of the encrypted file store: a writer process is killed (SIGKILL) at
//! random moments while it writes, again and again; after each kill every read must
//! give a complete version whose content matches its version number.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or bench fails loudly on any error")]
#![cfg(feature = "file")]

use std::io::{BufRead, BufReader, Write};
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
        // Tell the parent the loop runs, so that it kills a writer, not a start-up.
        // (To the stdout handle: println! is captured by the test harness.)
        let mut stdout = std::io::stdout();
        writeln!(stdout, "wrote {next}").unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_writer_mid_write_never_tears_a_secret() {
    // On the target directory's disk, not a tmpfs: fsync must cost what it costs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let key = FernetKey::generate().unwrap().to_base64();
    let exe = std::env::current_exe().unwrap();
    let mut last_version = 0;
    let (rounds, mut mid_write) = (20, 0);
    for round in 0..rounds {
        let temp_files_before = temp_files(dir.path());
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_writer_child", "--nocapture", "--test-threads=1"])
            .env(STORE_DIR, dir.path())
            .env(STORE_KEY, key.expose_secret())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the writer has completed a write, so that it is in its loop.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("wrote") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the writer exited before writing");
        }
        // Odd rounds: kill as soon as a write's temp file appears (between create and
        // rename: the torn-write case). Even rounds: kill at a moment of the loop.
        if round % 2 == 1 {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while temp_files(dir.path()) == temp_files_before && std::time::Instant::now() < deadline {
                std::hint::spin_loop();
            }
        } else {
            tokio::time::sleep(Duration::from_millis((round * 7 % 23) as u64)).await;
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer must have been killed, not have finished");

        if temp_files(dir.path()) > temp_files_before {
            mid_write += 1;
        }
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
    eprintln!("{rounds} kills, {mid_write} of them mid-write (temp file left behind)");
    assert!(mid_write >= rounds / 4, "only {mid_write} of {rounds} kills landed mid-write: the test proved little");
    // Temp files of killed writes remain; they never show up as keys.
    let listed = open(dir.path(), key.expose_secret()).list().await.unwrap();
    assert!(listed.iter().all(|k| k == "app/blob" || k.starts_with("app/k")), "{listed:?}");
}

fn temp_files(dir: &Path) -> usize {
    walk(dir).iter().filter(|name| name.contains(".tmp-")).count()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            names.extend(walk(&entry.path()));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}
