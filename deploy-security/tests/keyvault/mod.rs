//! A loopback stand-in for Azure Key Vault's secrets REST API (7.4), Microsoft
//! Entra ID's client-credentials token endpoint and the instance metadata service's
//! managed-identity endpoint, hand-written on HTTP/1.1 from the documented API with
//! real-shaped JSON (no real Key Vault can run here). It checks what the real
//! services check (api-version, bearer tokens, the `Metadata: true` header, the
//! client secret and scope) and keeps its own store, which tests read back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "0b8c4e2a-2d0c-4c8e-9f4e-5a0e1c3b7d11";
pub const CLIENT_SECRET: &str = "Qx8~cl1ent-s3cret.value";
/// Every version is created in this same second, so that ordering must come from
/// the version tag, not the timestamp.
pub const CREATED: i64 = 1_700_000_000;

#[derive(Clone, Debug)]
pub struct Version {
    pub id: String,
    pub value: String,
    pub content_type: Option<String>,
    pub tags: Value,
}

#[derive(Default)]
pub struct State {
    pub secrets: BTreeMap<String, Vec<Version>>,
    pub deleted: BTreeMap<String, Vec<Version>>,
    /// Tokens the vault accepts.
    pub valid_tokens: Vec<String>,
    /// Every token issued.
    pub issued: Vec<String>,
    pub token_expires_in: i64,
    pub client_credential_requests: u64,
    pub identity_requests: Vec<String>,
    /// The next this-many vault requests answer 429.
    pub throttle: u32,
    pub retry_after: u64,
    pub page_size: usize,
    /// Paging links point at another host.
    pub foreign_next_link: bool,
    /// Vault requests answer 307 to this location.
    pub redirect_to: Option<String>,
    /// The metadata service answers only `expires_on` (as older API versions do).
    pub identity_omits_expires_in: bool,
    /// `METHOD target` of every vault request.
    pub log: Vec<String>,
    version_seq: u64,
}

pub struct KeyVault {
    pub base: String,
    pub state: Arc<Mutex<State>>,
}

impl KeyVault {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { token_expires_in: 3599, page_size: 2, ..State::default() }));
        let (task_state, task_base) = (Arc::clone(&state), base.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, base) = (Arc::clone(&task_state), task_base.clone());
                tokio::spawn(async move { serve(stream, state, base).await });
            }
        });
        Self { base, state }
    }

    pub fn identity_endpoint(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.base)
    }

    /// Stores a version as if another client had written it (no tag).
    pub fn insert(&self, name: &str, value: &str) {
        self.with(|s| {
            s.version_seq += 1;
            let id = format!("{:032x}", s.version_seq);
            let version = Version { id, value: value.to_owned(), content_type: None, tags: json!({}) };
            s.secrets.entry(name.to_owned()).or_default().push(version);
        });
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, headers: Vec::new(), body: Some(body) }
}

fn vault_error(status: u16, code: &str, message: &str) -> Answer {
    answer(status, json!({ "error": { "code": code, "message": message } }))
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>, base: String) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader).await else { return };
        let answer = route(&request, &mut state.lock().unwrap(), &base);
        let reason = match answer.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            307 => "Temporary Redirect",
            409 => "Conflict",
            429 => "Too Many Requests",
            _ => "Other",
        };
        let body = answer.body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!("HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\n", answer.status, body.len());
        if !body.is_empty() {
            head.push_str("content-type: application/json; charset=utf-8\r\n");
        }
        for (name, value) in answer.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    Some(Request { method, path: path.to_owned(), query, headers, body })
}

fn route(request: &Request, state: &mut State, base: &str) -> Answer {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", [tenant, "oauth2", "v2.0", "token"]) => client_credentials(request, state, tenant),
        ("GET", ["metadata", "identity", "oauth2", "token"]) => managed_identity(request, state),
        _ => vault(request, state, base, &segments),
    }
}

fn issue(state: &mut State) -> String {
    let token = format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload-{}.sig", state.issued.len() + 1);
    state.issued.push(token.clone());
    state.valid_tokens.push(token.clone());
    token
}

fn client_credentials(request: &Request, state: &mut State, tenant: &str) -> Answer {
    state.client_credential_requests += 1;
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str);
    if tenant != TENANT {
        return answer(
            400,
            json!({ "error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found." }),
        );
    }
    if field("grant_type") != Some("client_credentials") || field("scope") != Some("https://vault.azure.net/.default") {
        return answer(400, json!({ "error": "invalid_request", "error_description": "AADSTS900144" }));
    }
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return answer(
            401,
            json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." }),
        );
    }
    let token = issue(state);
    let expires = state.token_expires_in;
    answer(
        200,
        json!({ "token_type": "Bearer", "expires_in": expires, "ext_expires_in": expires, "access_token": token }),
    )
}

fn managed_identity(request: &Request, state: &mut State) -> Answer {
    state.identity_requests.push(format!("{:?}", request.query));
    if request.headers.get("metadata").map(String::as_str) != Some("true") {
        return answer(
            400,
            json!({ "error": "invalid_request", "error_description": "Required metadata header not specified" }),
        );
    }
    if request.query.get("api-version").map(String::as_str) != Some("2018-02-01")
        || request.query.get("resource").map(String::as_str) != Some("https://vault.azure.net")
    {
        return answer(400, json!({ "error": "invalid_request", "error_description": "bad query" }));
    }
    let token = issue(state);
    let expires = state.token_expires_in;
    let on = jiff::Timestamp::now().as_second() + expires;
    let mut body = json!({
            "access_token": token,
            "client_id": request.query.get("client_id").cloned().unwrap_or_else(|| "system-assigned".to_owned()),
            "expires_in": expires.to_string(),
            "expires_on": on.to_string(),
            "ext_expires_in": expires.to_string(),
            "not_before": (on - expires).to_string(),
            "resource": "https://vault.azure.net",
            "token_type": "Bearer",
    });
    if state.identity_omits_expires_in {
        body.as_object_mut().unwrap().remove("expires_in");
    }
    answer(200, body)
}

fn attributes() -> Value {
    json!({ "enabled": true, "created": CREATED, "updated": CREATED, "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90 })
}

fn bundle(base: &str, name: &str, version: &Version, with_value: bool) -> Value {
    let mut bundle = json!({
        "id": format!("{base}/secrets/{name}/{}", version.id),
        "attributes": attributes(),
        "tags": version.tags,
    });
    if with_value {
        bundle["value"] = json!(version.value);
    }
    if let Some(content_type) = &version.content_type {
        bundle["contentType"] = json!(content_type);
    }
    bundle
}

fn page(request: &Request, state: &State, base: &str, path: &str, items: Vec<Value>) -> Answer {
    let skip: usize = request.query.get("$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0);
    let size = state.page_size;
    let value: Vec<Value> = items.iter().skip(skip).take(size).cloned().collect();
    let next = if skip + size < items.len() {
        let host = if state.foreign_next_link { "https://attacker.example" } else { base };
        json!(format!("{host}/{path}?api-version=7.4&$skiptoken={}&maxresults={size}", skip + size))
    } else {
        Value::Null
    };
    answer(200, json!({ "value": value, "nextLink": next }))
}

fn not_found(name: &str) -> Answer {
    vault_error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."
        ),
    )
}

fn vault(request: &Request, state: &mut State, base: &str, segments: &[&str]) -> Answer {
    state.log.push(format!("{} {}", request.method, request.path));
    if let Some(location) = &state.redirect_to {
        return Answer { status: 307, headers: vec![("location", location.clone())], body: None };
    }
    if state.throttle > 0 {
        state.throttle -= 1;
        let mut a = vault_error(429, "Throttled", "Operations per second exceeded for this vault.");
        a.headers.push(("retry-after", state.retry_after.to_string()));
        return a;
    }
    if request.query.get("api-version").map(String::as_str) != Some("7.4") {
        return vault_error(400, "BadParameter", "The api-version parameter is missing or not supported.");
    }
    let token = request.headers.get("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default();
    if !state.valid_tokens.iter().any(|t| t == token) {
        let mut a = vault_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.");
        a.headers.push((
            "www-authenticate",
            "Bearer authorization=\"https://login.microsoftonline.com/tenant\", resource=\"https://vault.azure.net\""
                .to_owned(),
        ));
        return a;
    }
    match (request.method.as_str(), segments) {
        ("GET", ["secrets"]) => {
            let items = state
                .secrets
                .iter()
                .filter_map(|(name, versions)| versions.last().map(|v| (name, v)))
                .map(|(name, v)| {
                    let mut item = bundle(base, name, v, false);
                    item["id"] = json!(format!("{base}/secrets/{name}"));
                    item
                })
                .collect();
            page(request, state, base, "secrets", items)
        }
        ("GET", ["secrets", name, "versions"]) => {
            let Some(versions) = state.secrets.get(*name) else { return not_found(name) };
            // Newest first, as an unordered listing may be: the client must order them.
            let items = versions.iter().rev().map(|v| bundle(base, name, v, false)).collect();
            page(request, state, base, &format!("secrets/{name}/versions"), items)
        }
        ("GET", ["secrets", name] | ["secrets", name, ""]) => match state.secrets.get(*name).and_then(|v| v.last()) {
            Some(v) => answer(200, bundle(base, name, v, true)),
            None => not_found(name),
        },
        ("GET", ["secrets", name, version]) => {
            match state.secrets.get(*name).and_then(|vs| vs.iter().find(|v| v.id == *version)) {
                Some(v) => answer(200, bundle(base, name, v, true)),
                None => not_found(name),
            }
        }
        ("PUT", ["secrets", name]) => {
            if state.deleted.contains_key(*name) {
                return vault_error(
                    409,
                    "Conflict",
                    &format!(
                        "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
                    ),
                );
            }
            let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                return vault_error(400, "BadParameter", "The request body is not JSON.");
            };
            let Some(value) = body["value"].as_str() else {
                return vault_error(400, "BadParameter", "Property value is required.");
            };
            state.version_seq += 1;
            // Version ids are random hex: never in creation order.
            let id = format!(
                "{:032x}",
                u128::from(state.version_seq).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            );
            let version = Version {
                id,
                value: value.to_owned(),
                content_type: body["contentType"].as_str().map(str::to_owned),
                tags: if body["tags"].is_object() { body["tags"].clone() } else { json!({}) },
            };
            let answer_body = bundle(base, name, &version, true);
            state.secrets.entry((*name).to_owned()).or_default().push(version);
            answer(200, answer_body)
        }
        ("DELETE", ["secrets", name]) => {
            let Some(versions) = state.secrets.remove(*name) else { return not_found(name) };
            let mut deleted = bundle(base, name, versions.last().unwrap(), false);
            deleted["recoveryId"] = json!(format!("{base}/deletedsecrets/{name}"));
            deleted["deletedDate"] = json!(CREATED + 60);
            deleted["scheduledPurgeDate"] = json!(CREATED + 60 + 90 * 86_400);
            state.deleted.insert((*name).to_owned(), versions);
            answer(200, deleted)
        }
        ("POST", ["deletedsecrets", name, "recover"]) => {
            let Some(versions) = state.deleted.remove(*name) else {
                return vault_error(404, "DeletedSecretNotFound", &format!("Deleted Secret not found: {name}"));
            };
            let recovered = bundle(base, name, versions.last().unwrap(), false);
            state.secrets.insert((*name).to_owned(), versions);
            answer(200, recovered)
        }
        ("DELETE", ["deletedsecrets", name]) => {
            if state.deleted.remove(*name).is_none() {
                return vault_error(404, "DeletedSecretNotFound", &format!("Deleted Secret not found: {name}"));
            }
            Answer { status: 204, headers: Vec::new(), body: None }
        }
        _ => vault_error(400, "BadParameter", "Unknown operation."),
    }
}
