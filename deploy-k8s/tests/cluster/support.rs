//! The test cluster: a client for it, a namespace per test with its node stand-in,
//! and the upstream CRDs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_core::model::{AppId, AppSpec, ImageRef, Name, Namespace, Port, Release, Version};
use deploy_k8s::Cluster;
use k8s_openapi::api::core::v1::Namespace as KubeNamespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::node::NodeStandIn;

/// Where the suite finds its cluster. Not `KUBECONFIG`: the suite creates and
/// deletes namespaces and (on a cluster without nodes) writes pod statuses, so it
/// runs only against a cluster named for it.
pub const KUBECONFIG_VAR: &str = "DEPLOY_RS_KUBECONFIG";

const MISSING: &str = "the Kubernetes test cluster is not available: `./scripts/test.sh` builds and starts it \
    (or run `scripts/kube-test-cluster.sh build && scripts/kube-test-cluster.sh start` and set \
    DEPLOY_RS_KUBECONFIG=/tmp/deploy-rs-kube/kubeconfig; for kind or k3d point DEPLOY_RS_KUBECONFIG at its \
    kubeconfig); see docs/kubernetes.md";

/// A client for the test cluster, or a panic that says how to start it.
pub async fn client() -> kube::Client {
    let path = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from).unwrap_or_else(|| panic!("{MISSING}"));
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("{MISSING} (reading {}: {e})", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{MISSING} ({}: {e})", path.display()));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("{MISSING} (client: {e})"))
}

/// A client for the cluster whose kubeconfig is at `path`.
pub async fn client_from(path: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("read the kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("a client for {}: {e}", path.display()))
}

/// A client for the test cluster that sends `user_agent`, so that the API server's
/// audit log can tell its requests apart.
pub async fn client_as(user_agent: &str) -> kube::Client {
    let path = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from).unwrap_or_else(|| panic!("{MISSING}"));
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kube config");
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_str(user_agent).expect("a user agent")));
    kube::Client::try_from(config).expect("client")
}

/// The API server's audit log of the project's test cluster (next to its kubeconfig).
pub fn audit_log() -> PathBuf {
    let path = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from).unwrap_or_else(|| panic!("{MISSING}"));
    let log = path.with_file_name("audit.log");
    assert!(
        log.exists(),
        "{} does not exist: the request budget needs the audit log of the project's test cluster \
         (scripts/kube-test-cluster.sh start writes it)",
        log.display()
    );
    log
}

/// The image tag that the node stand-in runs as a ready pod.
pub const REGISTRY: &str = "registry.deploy-rs.test/shop/web";

/// A release whose pods become Ready.
pub fn release(version: &str) -> Release {
    Release::new(Version::new(version).expect("version"), image(version))
}

/// A release whose image does not exist (its registry host does not resolve).
pub fn missing_image_release(version: &str) -> Release {
    let image = ImageRef::parse(&format!("registry.invalid/deploy-rs/web:{version}")).expect("image");
    Release::new(Version::new(version).expect("version"), image)
}

/// A release whose containers crash in a loop.
pub fn crash_loop_release(version: &str) -> Release {
    let v = format!("crashloop-{version}");
    Release::new(Version::new(&v).expect("version"), image(&v))
}

/// A release whose pods run but never pass readiness.
pub fn never_ready_release(version: &str) -> Release {
    let v = format!("neverready-{version}");
    Release::new(Version::new(&v).expect("version"), image(&v))
}

/// The image of a release: `DEPLOY_RS_TEST_IMAGE` on a cluster whose nodes pull
/// images, for ordinary releases; otherwise a name the node stand-in reads.
fn image(tag: &str) -> ImageRef {
    let doomed = tag.starts_with("crashloop") || tag.starts_with("neverready");
    match std::env::var("DEPLOY_RS_TEST_IMAGE") {
        Ok(image) if !doomed => ImageRef::parse(&image).expect("DEPLOY_RS_TEST_IMAGE is an image reference"),
        _ => ImageRef::parse(&format!("{REGISTRY}:{tag}")).expect("image"),
    }
}

/// One test's namespace on the cluster, with a node stand-in for its pods.
pub struct Scratch {
    /// The cluster handle the test uses.
    pub cluster: Cluster,
    /// The test's own namespace.
    pub namespace: String,
    /// The node stand-in (none on a cluster with nodes).
    pub node: Option<NodeStandIn>,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Scratch {
    /// A fresh namespace named after the test.
    pub async fn new(test: &str) -> Self {
        Self::on(client().await, test).await
    }

    /// A fresh namespace on the cluster `client` reaches (another test cluster).
    pub async fn on(client: kube::Client, test: &str) -> Self {
        let cluster = Cluster::new(client.clone());
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let mut namespace = format!("t-{}-{}-{n}", test.replace('_', "-"), std::process::id());
        namespace.truncate(63);
        let namespace = namespace.trim_end_matches('-').to_owned();
        let labels = BTreeMap::from([("deploy-rs.io/test".to_owned(), "true".to_owned())]);
        cluster.ensure_namespace(&namespace, labels).await.unwrap_or_else(|e| panic!("create namespace: {e}"));
        let node = NodeStandIn::start(client, &namespace).await;
        Self { cluster, namespace, node }
    }

    /// The app every test rolls out: `web`, one HTTP port, 4 replicas.
    pub fn spec(&self) -> AppSpec {
        AppSpec::new(self.ns(), Name::new("web").expect("name"), image("1"))
            .port(Port::tcp("http", 8080).expect("port"))
            .replicas(4)
    }

    /// The test's namespace, typed.
    pub fn ns(&self) -> Namespace {
        Namespace::new(self.namespace.clone()).unwrap_or_else(|e| panic!("test namespace: {e}"))
    }

    /// The app's id.
    pub fn app(&self) -> AppId {
        self.spec().id()
    }

    /// A typed API for namespaced objects of the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.cluster.client().clone(), &self.namespace)
    }

    /// Deletes the namespace (the namespace controller removes what is in it).
    pub async fn cleanup(self) {
        let api: Api<KubeNamespace> = Api::all(self.cluster.client().clone());
        let _ = api.delete(&self.namespace, &DeleteParams::background()).await;
    }
}

/// Waits up to `deadline` for `check` to hold, then panics with `what`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(tokio::time::Instant::now() < end, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// Installs the upstream CRDs (Istio, Gateway API, VPA, KEDA, Velero, Argo CD; kept
/// in `deploy-k8s/tests/crds/`) once per test process and waits until they are served.
pub async fn install_crds(client: &kube::Client) {
    CRDS.get_or_init(|| async {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/crds");
        let mut names = Vec::new();
        for file in [
            "istio-customresourcedefinitions.gen.yaml",
            "gateway.networking.k8s.io_httproutes.yaml",
            "gateway.networking.k8s.io_gateways.yaml",
            "vpa-v1-crd-gen.yaml",
            "keda.sh_scaledobjects.yaml",
            "velero.io_schedules.yaml",
            "application-crd.yaml",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
            for doc in serde_norway::Deserializer::from_str(&text) {
                let mut value: Value =
                    serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("parse {file}: {e}"));
                if value.is_null() {
                    continue;
                }
                // 1.20 refuses `default: ""` on string fields of these schemas.
                drop_empty_string_defaults(&mut value);
                let crd: CustomResourceDefinition =
                    serde_json::from_value(value).unwrap_or_else(|e| panic!("CRD in {file}: {e}"));
                names.push(create_crd(client, &crd).await);
            }
        }
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for name in names {
            eventually(&format!("CRD {name} established"), Duration::from_secs(30), || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    api.get(&name)
                        .await
                        .ok()
                        .and_then(|c| c.status)
                        .and_then(|s| s.conditions)
                        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
                }
            })
            .await;
        }
    })
    .await;
}

async fn create_crd(client: &kube::Client, crd: &CustomResourceDefinition) -> String {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("install CRD {name}: {e}"),
    }
    name
}

fn drop_empty_string_defaults(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("default").is_some_and(|d| d == "") {
                map.remove("default");
            }
            map.values_mut().for_each(drop_empty_string_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_string_defaults),
        _ => {}
    }
}

/// A TCP proxy in front of the API server whose connections a test can cut, as a
/// load balancer or a network blip would: TLS passes through unchanged.
pub struct CuttableProxy {
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    accepted: Arc<AtomicU32>,
    acceptor: JoinHandle<()>,
    /// A client that talks to the API server through the proxy.
    pub client: kube::Client,
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

impl CuttableProxy {
    /// A proxy to the test cluster's API server.
    pub async fn start() -> Self {
        let path = std::env::var_os(KUBECONFIG_VAR).map(PathBuf::from).unwrap_or_else(|| panic!("{MISSING}"));
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
        let upstream = format!(
            "{}:{}",
            config.cluster_url.host().expect("server host"),
            config.cluster_url.port_u16().expect("server port")
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = Arc::new(AtomicU32::new(0));
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (conns, count, refuse) = (connections.clone(), accepted.clone(), blocked.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                if refuse.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("proxy lock").push(task);
            }
        });
        config.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("proxy url");
        let client = kube::Client::try_from(config).expect("client through the proxy");
        Self { connections, blocked, accepted, acceptor, client }
    }

    /// Closes every open connection at once.
    pub fn cut(&self) -> usize {
        let mut conns = self.connections.lock().expect("proxy lock");
        let n = conns.iter().filter(|t| !t.is_finished()).count();
        conns.drain(..).for_each(|t| t.abort());
        n
    }

    /// Cuts every connection and drops new ones until [`Self::unblock`]: the
    /// server is unreachable for this client.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Lets connections through again.
    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads `handle`'s events until the rollout waits in a pause; panics if it ends
/// first or no pause comes within 60 s.
pub async fn until_paused(handle: &mut deploy_core::engine::RolloutHandle) {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), handle.next_event()).await {
            Ok(Some(deploy_core::engine::RolloutEvent::Paused { .. })) => return,
            Ok(Some(deploy_core::engine::RolloutEvent::Finished { .. }) | None) => panic!("finished before a pause"),
            Ok(Some(_)) => {}
            Err(_) => panic!("no pause within 60 s"),
        }
    }
}

/// When deploy-rs (its field manager) last changed `meta`'s object, from the server's
/// managed fields.
pub fn last_changed_by_deploy_rs(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some("deploy-rs"))
        .filter_map(|m| m.time.clone())
        .max()
}
