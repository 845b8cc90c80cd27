#!/usr/bin/env bash
# Checks that every feature a user may pick builds on its own, that deploy-core's
# kernel pulls none of the toolkit's dependencies, and that every published crate
# packages.
#
# 1. cargo-hack `--each-feature`: for each library crate, `cargo check` with no
#    features, with each feature alone (plus the defaults, as a user who adds one
#    feature gets them), and with all features. `--no-dev-deps` leaves the
#    dev-dependencies out, so that a feature which only builds because a
#    dev-dependency switches something on is caught. While it runs, cargo-hack
#    edits the crates' Cargo.toml (it restores them at the end) and cargo prunes
#    Cargo.lock: do not run other cargo commands or commit in the meantime. This
#    script puts Cargo.lock back when it exits. Needs cargo-hack
#    (`cargo install cargo-hack --locked`); CI installs it when missing.
#
# 2. `cargo package --workspace --no-verify`: builds the .crate files of the five
#    library crates (examples is `publish = false`) and checks what cargo checks
#    before an upload: metadata, readme, license, included files, and that every
#    dependency resolves from a registry. deploy-k8s, deploy-docker,
#    deploy-security and deploy-cache depend on deploy-core, which is not on
#    crates.io yet: packaged one by one (`-p deploy-k8s`) they fail with "no
#    matching package named `deploy-core` found". Packaged together with
#    `--workspace`, cargo resolves deploy-core from a local overlay of the crates
#    being packaged, so all five package. `--no-verify` skips building each .crate
#    in a fresh target directory: that would compile the whole dependency tree five
#    more times, and step 1 already checks that each crate builds from its own
#    manifest. It needs the crates.io index (cargo fetches it; offline, add
#    `--offline` once the index is cached).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

crates=(deploy-core deploy-k8s deploy-docker deploy-security deploy-cache)

if ! cargo hack --version >/dev/null 2>&1; then
    echo "cargo-hack is missing: cargo install cargo-hack --locked" >&2
    exit 1
fi

lock_backup="$(mktemp)"
cp Cargo.lock "$lock_backup"
trap 'cp "$lock_backup" Cargo.lock; rm -f "$lock_backup"' EXIT

# The kernel: deploy-core without features compiles none of the toolkit's
# dependencies (issue 14). `cargo tree` needs no build.
echo "=== deploy-core kernel dependencies ==="
kernel_tree="$(cargo tree -p deploy-core --no-default-features -e normal --prefix none --format '{p}')"
for dep in arc-swap rand tokio-util reqwest rustls toml serde_norway metrics cdevents-sdk; do
    if grep -q "^$dep v" <<<"$kernel_tree"; then
        echo "deploy-core without features depends on $dep (a toolkit or backend dependency):" >&2
        cargo tree -p deploy-core --no-default-features -e normal -i "$dep" >&2
        exit 1
    fi
done

for crate in "${crates[@]}"; do
    echo "=== features of $crate ==="
    cargo hack check -p "$crate" --each-feature --no-dev-deps
done

echo "=== cargo package ==="
# Every crate needs its README.md (the manifests name it as `readme`).
cargo package --workspace --exclude deploy-examples --no-verify "$@"
