//! Build-context packing throughput: `pack_context` (with a `.dockerignore`)
//! against the `tar` command on the same tree, in the same run.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up on a temporary tree")]
#![expect(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deploy_docker::context::pack_context;

/// 400 files from 1 KiB to 256 KiB (about 26 MiB) in 20 directories, plus an
/// ignored `target/` that neither packer should read (tar is told to exclude it).
fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    std::fs::write(root.join(".dockerignore"), "target\n").unwrap();
    for dir in 0..20 {
        let dir_path = root.join(format!("src/module{dir}"));
        std::fs::create_dir_all(&dir_path).unwrap();
        for file in 0..20u64 {
            let size = 1024 << (file % 9);
            let content: Vec<u8> = (0..size).map(|i| (i * 31 + file) as u8).collect();
            std::fs::write(dir_path.join(format!("file{file}.rs")), &content).unwrap();
            total += size;
        }
    }
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(root.join("target/big.bin"), vec![0u8; 8 << 20]).unwrap();
    total
}

fn packing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = make_tree(dir.path());
    let mut group = c.benchmark_group("context_packing");
    group.throughput(Throughput::Bytes(bytes));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    group.bench_function("pack_context", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(32 << 20);
            black_box(pack_context(dir.path(), Path::new("Dockerfile"), &mut out).unwrap());
            black_box(out.len())
        });
    });
    group.bench_function("tar_command", |b| {
        b.iter(|| {
            // The same work: read the tree, write a tar stream into this process's memory.
            let output = Command::new("tar")
                .args(["--exclude=./target", "-cf", "-", "."])
                .current_dir(dir.path())
                .stderr(Stdio::null())
                .output()
                .expect("the tar command is needed for the baseline");
            assert!(output.status.success());
            black_box(output.stdout.len())
        });
    });
    group.finish();
}

criterion_group!(benches, packing);
criterion_main!(benches);
