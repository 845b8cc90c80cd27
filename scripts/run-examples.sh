#!/usr/bin/env bash
# Builds every example of deploy-rs and runs the ones that need no external system
# (or only a local service that CI installs), each with the arguments that make it
# finish on its own. An example that ends with an error fails this script.
#
#   example            args        needs
#   quickstart         (none)      nothing: in-memory test kit, paused clock
#   quickstart         --dry-run   nothing: prints the plans
#   fleet              (none)      nothing: nine test-kit clusters in three waves
#   fleet              --dry-run   nothing: prints the fleet plan
#   rollout_metrics    (none)      nothing: test kit, and the metrics exporter on a
#                                  loopback port
#   progress_bar       (none)      nothing: test kit; bars are hidden when stderr is
#                                  not a terminal, the log lines still print
#   pipeline           (none)      nothing: in-process build / scan / registry
#                                  stand-ins and the test kit
#   tiered_cache       (none)      redis-server on PATH (Debian: redis-server); the
#                                  example starts and stops its own server
#   secrets_rotation   (none)      nothing: Fernet-encrypted file store in a temp dir
#   docker_blue_green  (none)      a running Docker engine, busybox-static and nginx
#                                  (Debian); builds FROM scratch, pulls nothing, starts
#                                  its own nginx on a loopback port, removes everything
#                                  it labelled at the end (about 30 s)
#   k8s_canary_istio   --dry-run   nothing: prints the plan and the manifests
#   k8s_blue_green     --dry-run   nothing: prints the plan and the manifests
#
# Not run here: k8s_canary_istio and k8s_blue_green without --dry-run (they need a
# Kubernetes cluster through KUBECONFIG, and Istio for the canary).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

cargo build -p deploy-examples --examples

run() {
    local example="$1"
    shift
    echo "=== example $example $* ==="
    cargo run -q -p deploy-examples --example "$example" -- "$@"
}

run quickstart
run quickstart --dry-run
run fleet
run fleet --dry-run
run rollout_metrics
run progress_bar
run pipeline
run tiered_cache
run secrets_rotation
run docker_blue_green
run k8s_canary_istio --dry-run
run k8s_blue_green --dry-run
echo "=== all examples ran ==="
