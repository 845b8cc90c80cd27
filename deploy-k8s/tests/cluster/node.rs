//! A node stand-in: what a kubelet would write into pod statuses, so that the real
//! deployment and replicaset controllers compute every Deployment status on a
//! control plane without nodes.
//!
//! It watches the pods of one namespace and, through `pods/status`, makes them:
//! - Running and Ready, for ordinary images;
//! - Pending in `ImagePullBackOff`, when the image's registry host ends in
//!   `.invalid` (a host that never resolves, RFC 2606);
//! - Running in `CrashLoopBackOff`, when the image tag starts with `crashloop`;
//! - Running and never Ready, when the image tag starts with `neverready`;
//! - for the pods of a Job: Succeeded, or Failed when the image tag starts with
//!   `hookfail`.
//!
//! Pods that carry a deletion timestamp are deleted for good, as a kubelet does once
//! their containers stopped. On a cluster that has nodes the stand-in must not run
//! (it would fight the kubelets); [`NodeStandIn::start`] checks that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a pod of a given image does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Starts and passes its readiness probe.
    Ready,
    /// Its image cannot be pulled.
    ImagePullBackOff,
    /// Its container exits and is restarted with back-off.
    CrashLoop,
    /// Runs and never passes its readiness probe.
    NeverReady,
    /// A Job's pod that runs to completion.
    Completes,
    /// A Job's pod whose container exits with status 1.
    Fails,
}

impl Behaviour {
    /// The behaviour the image name asks for (see the module docs).
    pub fn of_image(image: &str) -> Self {
        let (name, tag) = match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (image, ""),
        };
        let host = name.split('/').next().unwrap_or_default();
        if name.contains('/') && host.ends_with(".invalid") {
            Behaviour::ImagePullBackOff
        } else if tag.starts_with("crashloop") {
            Behaviour::CrashLoop
        } else if tag.starts_with("neverready") {
            Behaviour::NeverReady
        } else {
            Behaviour::Ready
        }
    }
}

/// A running stand-in; it stops when dropped.
pub struct NodeStandIn {
    task: JoinHandle<()>,
    held: Arc<AtomicBool>,
    released: Arc<Notify>,
}

impl Drop for NodeStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeStandIn {
    /// Leaves new pods as they are (Pending, as on a busy node) until [`Self::release`].
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Acts on every pod again, those that arrived while held included.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.released.notify_one();
    }

    /// Starts the stand-in for `namespace`, or returns `None` on a cluster that has
    /// nodes of its own (kind, k3d, a real cluster), where kubelets do this.
    pub async fn start(client: kube::Client, namespace: &str) -> Option<Self> {
        let nodes: Api<Node> = Api::all(client.clone());
        let has_nodes = nodes
            .list(&ListParams::default().limit(1))
            .await
            .map(|list| !list.items.is_empty())
            .unwrap_or_else(|e| panic!("list nodes on the test cluster: {e}"));
        if has_nodes {
            return None;
        }
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let held = Arc::new(AtomicBool::new(false));
        let released = Arc::new(Notify::new());
        let (h, r) = (held.clone(), released.clone());
        let task = tokio::spawn(async move {
            // The watcher re-lists after a dropped watch; errors are retried with back-off.
            let stream =
                kube::runtime::WatchStreamExt::default_backoff(watcher(pods.clone(), watcher::Config::default()));
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    next = stream.try_next() => match next {
                        Ok(Some(Event::Apply(pod) | Event::InitApply(pod))) if !h.load(Ordering::SeqCst) => {
                            act(&pods, &pod).await;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => eprintln!("node stand-in: watch error (retried): {e}"),
                    },
                    () = r.notified() => {
                        let all = pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
                        for pod in &all {
                            act(&pods, pod).await;
                        }
                    }
                }
            }
        });
        Some(Self { task, held, released })
    }
}

async fn act(pods: &Api<Pod>, pod: &Pod) {
    let Some(name) = pod.metadata.name.as_deref() else { return };
    if pod.metadata.deletion_timestamp.is_some() {
        // By UID: a late event of a deleted StatefulSet pod must not delete the pod
        // of the same name that the controller has made since.
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default().grace_period(0)
        };
        let _ = pods.delete(name, &params).await;
        return;
    }
    let Some(spec) = &pod.spec else { return };
    let of_job = pod.metadata.owner_references.iter().flatten().any(|o| o.kind == "Job");
    let behaviour = if of_job {
        let fails = spec.containers.iter().any(|c| {
            c.image.as_deref().and_then(|i| i.rsplit_once(':')).is_some_and(|(_, tag)| tag.starts_with("hookfail"))
        });
        if fails { Behaviour::Fails } else { Behaviour::Completes }
    } else {
        spec.containers
            .iter()
            .map(|c| Behaviour::of_image(c.image.as_deref().unwrap_or_default()))
            .find(|b| *b != Behaviour::Ready)
            .unwrap_or(Behaviour::Ready)
    };
    if already(pod, behaviour) {
        return;
    }
    let status = status_for(pod, behaviour);
    if let Err(e) = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await {
        // A pod deleted in between is normal; anything else shows in the test output.
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            eprintln!("node stand-in: status of {name}: {e}");
        }
    }
}

/// Whether the pod already shows what the stand-in would write.
fn already(pod: &Pod, behaviour: Behaviour) -> bool {
    let Some(status) = &pod.status else { return false };
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .next();
    let phase = status.phase.as_deref();
    match behaviour {
        Behaviour::Ready => phase == Some("Running") && ready,
        Behaviour::ImagePullBackOff => waiting.as_deref() == Some("ImagePullBackOff"),
        Behaviour::CrashLoop => waiting.as_deref() == Some("CrashLoopBackOff"),
        Behaviour::NeverReady => phase == Some("Running") && !ready && status.container_statuses.is_some(),
        Behaviour::Completes => phase == Some("Succeeded"),
        Behaviour::Fails => phase == Some("Failed"),
    }
}

/// The status a kubelet would report, as a merge patch of `pods/status`.
fn status_for(pod: &Pod, behaviour: Behaviour) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let containers: Vec<(String, String)> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    let ready = behaviour == Behaviour::Ready;
    let condition = |type_: &str, status: bool| json!({"type": type_, "status": if status { "True" } else { "False" }, "lastTransitionTime": now});
    let container_statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| {
            let (state, restarts) = match behaviour {
                Behaviour::Ready | Behaviour::NeverReady => (json!({"running": {"startedAt": now}}), 0),
                Behaviour::Completes => (
                    json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}),
                    0,
                ),
                Behaviour::Fails => {
                    (json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}}), 0)
                }
                Behaviour::ImagePullBackOff => (
                    json!({"waiting": {"reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{image}\"")}}),
                    0,
                ),
                Behaviour::CrashLoop => (
                    json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off 40s restarting failed container={name}")}}),
                    3,
                ),
            };
            json!({"name": name, "image": image, "imageID": "", "ready": ready, "restartCount": restarts,
                   "started": behaviour != Behaviour::ImagePullBackOff, "state": state})
        })
        .collect();
    let phase = match behaviour {
        Behaviour::ImagePullBackOff => "Pending",
        Behaviour::Completes => "Succeeded",
        Behaviour::Fails => "Failed",
        _ => "Running",
    };
    json!({"status": {
        "phase": phase,
        "hostIP": "10.0.0.1",
        "podIP": "10.1.0.1",
        "startTime": now,
        "conditions": [
            condition("Initialized", true),
            condition("PodScheduled", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": container_statuses,
    }})
}

#[test]
fn image_names_choose_the_behaviour() {
    assert_eq!(Behaviour::of_image("registry.local/web:1"), Behaviour::Ready);
    assert_eq!(Behaviour::of_image("localhost:5000/web"), Behaviour::Ready);
    assert_eq!(Behaviour::of_image("registry.invalid/deploy-rs/web:404"), Behaviour::ImagePullBackOff);
    assert_eq!(Behaviour::of_image("registry.local/web:crashloop-2"), Behaviour::CrashLoop);
    assert_eq!(Behaviour::of_image("registry.local/web:neverready-2"), Behaviour::NeverReady);
}
