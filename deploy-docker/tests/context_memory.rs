//! A build context larger than 1 GiB packs in flat memory, and a context several
//! times the allowed growth streams to the real engine in flat memory: the packer
//! copies files through a fixed buffer and the builder sends the archive in chunks
//! as it is packed. Memory is the process's peak resident set (`VmHWM`), so this
//! file holds one test and nothing else runs beside it.
//!
//! The engine writes every byte of a context it receives to its own disk, so the
//! context sent to it is smaller than the packed one: 320 MiB is five times the
//! allowed growth (a builder that buffered the archive fails), while 1.1 GiB failed
//! a CI machine with `no space left on device` in the daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test set-up: a failure there is the test failing")]

mod common;

use std::io::Write;

use common::{Cleanup, docker};
use deploy_core::build::{BuildRequest, ImageBuilder};
use deploy_core::model::ImageRef;
use deploy_docker::DockerImageBuilder;
use deploy_docker::context::pack_context;

/// The process's peak resident set so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Counts what is written, keeps nothing.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const BIG: u64 = 1100 * 1024 * 1024;
const SENT_TO_ENGINE: u64 = 320 * 1024 * 1024;
const ALLOWED_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_over_1_gib_packs_in_flat_memory_and_one_streams_to_the_engine() {
    let docker = docker().await;
    let cleanup = Cleanup::new("bigctx");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY small.txt /small.txt\n").unwrap();
    std::fs::write(dir.path().join("small.txt"), "hello\n").unwrap();
    // Sparse: 1.1 GiB of zeros that take no disk until read.
    std::fs::File::create(dir.path().join("big.bin")).unwrap().set_len(BIG).unwrap();

    let before = peak_rss_kib();
    let mut counter = Counter(0);
    let stats = pack_context(dir.path(), "Dockerfile".as_ref(), &mut counter).unwrap();
    assert!(stats.content_bytes > BIG && counter.0 > BIG, "{stats:?}, {} bytes", counter.0);
    let after_pack = peak_rss_kib();
    assert!(
        after_pack - before < ALLOWED_GROWTH_KIB,
        "packing 1.1 GiB grew the peak RSS by {} MiB",
        (after_pack - before) / 1024
    );

    // A smaller context through the engine: streamed as it is packed.
    std::fs::File::create(dir.path().join("big.bin")).unwrap().set_len(SENT_TO_ENGINE).unwrap();
    let (key, value) = cleanup.label();
    let request = BuildRequest::new(dir.path())
        .tag(ImageRef::parse(&format!("deploy-rs-test/{}:big", cleanup.id)).unwrap())
        .label(key, value);
    let result = DockerImageBuilder::new(docker.clone()).build_to_end(request).await.unwrap();
    assert!(!result.image_id.is_empty());
    let after_build = peak_rss_kib();
    assert!(
        after_build - before < ALLOWED_GROWTH_KIB,
        "building with a {} MiB context grew the peak RSS by {} MiB",
        SENT_TO_ENGINE / (1024 * 1024),
        (after_build - before) / 1024
    );
}
