//! The Kubernetes state and history stores pass deploy-core's one conformance
//! suite on the real API server, through two clients (two "pods").

use deploy_core::testkit::conformance;
use deploy_k8s::state::{KubeHistoryStore, KubeStateStore};

use crate::support::{Scratch, client_as};

#[tokio::test]
async fn kubernetes_stores_pass_the_conformance_suite() {
    let s = Scratch::new("conformance").await;
    let a = KubeStateStore::new(s.cluster.clone());
    let b = KubeStateStore::new(deploy_k8s::cluster::Cluster::new(client_as("conformance-second-driver").await));
    conformance::state_store(&a, &b, &s.app()).await;
    conformance::history_store(&KubeHistoryStore::new(s.cluster.clone(), s.ns()), &s.app()).await;
    s.cleanup().await;
}
