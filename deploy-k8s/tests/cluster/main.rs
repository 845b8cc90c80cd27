//! deploy-k8s against a real Kubernetes API server and controller-manager.
//!
//! `./scripts/test.sh` builds (once) and starts the project's test cluster
//! (`scripts/kube-test-cluster.sh`: kube-apiserver and kube-controller-manager
//! 1.20.2 with etcd on loopback) and points `DEPLOY_RS_KUBECONFIG` at it. Any other
//! cluster works too (kind, k3d): set `DEPLOY_RS_KUBECONFIG` to its kubeconfig.
//! Without it every test fails with a message that says how to start one; none is
//! skipped. Each test works in its own namespace. On a cluster without nodes a
//! node stand-in ([`node`]) writes the pod statuses a kubelet would.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test code fails the test on any error")]

mod addons;
mod api_versions;
mod budget;
mod conformance;
mod docker_host;
mod engine;
mod failover;
mod faults;
mod fleet;
mod helm;
mod hooks;
mod node;
mod platform;
mod preflight;
mod routers;
mod safety;
mod snapshots;
mod stateful;
mod support;
mod workloads;
