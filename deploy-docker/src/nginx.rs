//! [`NginxRouter`]: weights and header routes in front of loopback-published
//! containers, through a real nginx the caller runs.
//!
//! The router owns one file per application in a directory the caller's
//! `nginx.conf` includes inside its `http` block (`include <dir>/*.conf;`). The
//! file holds one `upstream` per track that receives traffic, a
//! `split_clients` on `$request_id` for the weights, a `map` on each routed
//! header that overrides them, and a `server` listening where the caller said.
//! Every change is written atomically, checked with `nginx -t` (a file nginx
//! refuses is replaced by the previous one and the error returned), and applied
//! with `nginx -s reload`, which nginx does gracefully: old workers finish the
//! requests they hold. [`NginxRouter::weights`] reads the split back from the
//! file as nginx sees it.
//!
//! Capabilities, truthfully: exact weights between any tracks, header routes by
//! exact value, prefix or regular expression (PCRE, nginx's syntax) to any track,
//! one route per header; no mirroring.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use deploy_core::error::ErrorKind;
use deploy_core::model::{AppId, Percent, Track, TrafficSplit};
use deploy_core::traffic::{HeaderMatch, HeaderRoute, RouterCapabilities, RouterError, TrafficRouter};

/// Where a track's replicas listen, for the upstream blocks: the Docker
/// platform's loopback-published ports, or any other source.
#[async_trait]
pub trait EndpointSource: Send + Sync {
    /// The addresses of `track`'s replicas now; empty when it has none.
    async fn endpoints(&self, app: &AppId, track: Track) -> Result<Vec<SocketAddr>, RouterError>;
}

/// A fixed table of endpoints, set by the caller.
#[derive(Debug, Default)]
pub struct StaticEndpoints(Mutex<BTreeMap<(AppId, Track), Vec<SocketAddr>>>);

impl StaticEndpoints {
    /// Sets the addresses of `track`'s replicas.
    pub fn set(&self, app: &AppId, track: Track, addrs: Vec<SocketAddr>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert((app.clone(), track), addrs);
    }
}

#[async_trait]
impl EndpointSource for StaticEndpoints {
    async fn endpoints(&self, app: &AppId, track: Track) -> Result<Vec<SocketAddr>, RouterError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(app.clone(), track))
            .cloned()
            .unwrap_or_default())
    }
}

/// How to reach the caller's nginx.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NginxConfig {
    /// The nginx binary (`/usr/sbin/nginx`).
    pub binary: PathBuf,
    /// The main configuration file, passed to `nginx -t -c` and `nginx -s reload -c`.
    pub main_config: PathBuf,
    /// The directory the main file includes; the router writes only its own
    /// `deploy-rs-*.conf` files there.
    pub include_dir: PathBuf,
    /// The master's pid file (the `pid` directive). When set, a change returns
    /// only once the workers of the previous configuration have exited (Linux
    /// `/proc`), so that nothing the engine removes next is still an upstream of
    /// a worker that serves requests; without it, `set_weights` returns when the
    /// reload is signalled.
    pub pid_file: Option<PathBuf>,
    /// How long to wait for the old workers (10 s).
    pub reload_timeout: std::time::Duration,
    /// Serve the split nginx has loaded at [`STATUS_PATH`] on the app's listen
    /// address (loopback clients only) and read [`NginxRouter::weights`] from there
    /// instead of from the file: what the running workers route, not what was
    /// written. Off by default: the path is taken from the app's URL space.
    pub status_endpoint: bool,
}

/// The path of the status endpoint ([`NginxConfig::status_endpoint`]): answers
/// `stable=75,canary=25`, the split of the configuration the worker runs.
pub const STATUS_PATH: &str = "/.deploy-rs/split";

impl NginxConfig {
    /// nginx at `/usr/sbin/nginx` with `main_config`, writing into `include_dir`.
    pub fn new(main_config: impl Into<PathBuf>, include_dir: impl Into<PathBuf>) -> Self {
        Self {
            binary: PathBuf::from("/usr/sbin/nginx"),
            main_config: main_config.into(),
            include_dir: include_dir.into(),
            pid_file: None,
            reload_timeout: std::time::Duration::from_secs(10),
            status_endpoint: false,
        }
    }

    /// Serves and reads the split from nginx's status endpoint (see the field).
    #[must_use]
    pub fn status_endpoint(mut self, on: bool) -> Self {
        self.status_endpoint = on;
        self
    }

    /// Waits for each reload to finish, reading the master's pid from `pid_file`.
    #[must_use]
    pub fn pid_file(mut self, pid_file: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(pid_file.into());
        self
    }

    /// Sets the nginx binary.
    #[must_use]
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }
}

#[derive(Debug, Default, Clone)]
struct AppRouting {
    listen: Option<SocketAddr>,
    split: Option<TrafficSplit>,
    routes: Vec<HeaderRoute>,
}

/// A [`TrafficRouter`] that drives nginx; see the [module](self).
pub struct NginxRouter {
    config: NginxConfig,
    endpoints: Arc<dyn EndpointSource>,
    apps: tokio::sync::Mutex<BTreeMap<AppId, AppRouting>>,
}

impl std::fmt::Debug for NginxRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxRouter").field("config", &self.config).finish_non_exhaustive()
    }
}

fn backend(operation: &str, kind: ErrorKind, e: impl Into<deploy_core::error::BoxError>) -> RouterError {
    RouterError::backend(operation, kind, e)
}

impl NginxRouter {
    /// A router for nginx as `config` says, with replica addresses from `endpoints`.
    pub fn new(config: NginxConfig, endpoints: Arc<dyn EndpointSource>) -> Self {
        Self { config, endpoints, apps: tokio::sync::Mutex::default() }
    }

    /// Serves `app` on `listen` (a loopback or public address of the host).
    pub async fn serve(&self, app: &AppId, listen: SocketAddr) {
        self.apps.lock().await.entry(app.clone()).or_default().listen = Some(listen);
    }

    /// Rewrites `app`'s file with the endpoints as they are now, if `track`
    /// receives traffic (a weight or a header route); otherwise does nothing.
    pub async fn refresh(&self, app: &AppId, track: Track) -> Result<(), RouterError> {
        let apps = self.apps.lock().await;
        let Some(routing) = apps.get(app) else { return Ok(()) };
        let weighted = routing.split.as_ref().is_some_and(|s| s.weight(track).value() > 0);
        if weighted || routing.routes.iter().any(|r| r.track == track) {
            self.apply(app, routing).await?;
        }
        Ok(())
    }

    /// The file the router writes for `app`.
    pub fn file(&self, app: &AppId) -> PathBuf {
        self.config.include_dir.join(format!("deploy-rs-{}-{}.conf", app.namespace, app.name))
    }

    fn key(app: &AppId) -> String {
        format!("deploy_rs_{}_{}", app.namespace, app.name).replace('-', "_")
    }

    async fn render(&self, app: &AppId, routing: &AppRouting) -> Result<String, RouterError> {
        let listen = routing.listen.ok_or_else(|| RouterError::NotFound {
            app: app.clone(),
            what: "listen address (NginxRouter::serve)".into(),
        })?;
        let split = routing.split.clone().unwrap_or_else(|| TrafficSplit::all(Track::Stable));
        let key = Self::key(app);
        let mut out = format!("# written by deploy-rs for {app}; do not edit\n");
        let mut tracks: Vec<Track> = split.iter().filter(|(_, p)| p.value() > 0).map(|(t, _)| t).collect();
        for r in &routing.routes {
            if !tracks.contains(&r.track) {
                tracks.push(r.track);
            }
        }
        for track in &tracks {
            let addrs = self.endpoints.endpoints(app, *track).await?;
            if addrs.is_empty() {
                return Err(RouterError::NotFound { app: app.clone(), what: format!("endpoints of track {track}") });
            }
            out.push_str(&format!("upstream {key}_{track} {{\n"));
            for a in addrs {
                out.push_str(&format!("    server {a} max_fails=0;\n"));
            }
            out.push_str("    keepalive 16;\n}\n");
        }
        out.push_str(&format!("split_clients \"${{request_id}}\" ${key}_weighted {{\n"));
        let weighted: Vec<(Track, Percent)> = split.iter().filter(|(_, p)| p.value() > 0).collect();
        for (i, (track, percent)) in weighted.iter().enumerate() {
            if i + 1 == weighted.len() {
                out.push_str(&format!("    * {key}_{track}; # {percent}\n"));
            } else {
                out.push_str(&format!("    {}% {key}_{track};\n", percent.value()));
            }
        }
        out.push_str("}\n");
        let mut last = format!("${key}_weighted");
        for (i, route) in routing.routes.iter().enumerate() {
            let var = format!("${key}_route{i}");
            let header = route.header.replace('-', "_");
            let pattern = match &route.matches {
                HeaderMatch::Exact(v) => format!("\"{}\"", escape(v)?),
                HeaderMatch::Prefix(v) => format!("\"~^{}\"", escape(&regex_escape(v))?),
                HeaderMatch::Regex(v) => format!("\"~{}\"", escape(v)?),
                _ => return Err(RouterError::Unsupported { capability: format!("header match {route}") }),
            };
            out.push_str(&format!(
                "map $http_{header} {var} {{\n    default {last};\n    {pattern} {key}_{};\n}}\n",
                route.track
            ));
            last = var;
        }
        let status = if self.config.status_endpoint {
            let live: Vec<String> = weighted.iter().map(|(t, p)| format!("{t}={}", p.value())).collect();
            format!(
                "    location = {STATUS_PATH} {{\n        allow 127.0.0.1;\n        allow ::1;\n        deny all;\n        \
                 default_type text/plain;\n        return 200 \"{}\";\n    }}\n",
                live.join(",")
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "server {{\n    listen {listen};\n{status}    location / {{\n        proxy_pass http://{last};\n        \
             proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        \
             proxy_next_upstream error timeout http_502 http_503;\n    }}\n}}\n"
        ));
        Ok(out)
    }

    async fn nginx(&self, args: &[&str]) -> Result<(), String> {
        let main = self.config.main_config.to_string_lossy().into_owned();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-c", &main]);
        let out = tokio::process::Command::new(&self.config.binary)
            .args(&full)
            .output()
            .await
            .map_err(|e| format!("run {}: {e}", self.config.binary.display()))?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
    }

    /// Writes `routing`, validates it with `nginx -t` (restoring the previous
    /// file if nginx refuses it) and reloads.
    async fn apply(&self, app: &AppId, routing: &AppRouting) -> Result<(), RouterError> {
        let text = self.render(app, routing).await?;
        let path = self.file(app);
        let previous = tokio::fs::read(&path).await.ok();
        write_atomic(&path, text.into_bytes()).await?;
        if let Err(refused) = self.nginx(&["-t", "-q"]).await {
            match previous {
                Some(bytes) => write_atomic(&path, bytes).await?,
                None => {
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
            return Err(backend("validate nginx configuration", ErrorKind::InvalidInput, refused));
        }
        let master = match &self.config.pid_file {
            Some(pid_file) => Some(read_pid(pid_file).await?),
            None => None,
        };
        let before = master.map(workers).unwrap_or_default();
        self.nginx(&["-s", "reload"]).await.map_err(|e| backend("reload nginx", ErrorKind::Unavailable, e))?;
        if let Some(master) = master {
            self.reloaded(master, &before).await?;
        }
        Ok(())
    }

    /// Waits until every worker that ran before the reload has exited and a new
    /// one runs.
    async fn reloaded(&self, master: u32, before: &[u32]) -> Result<(), RouterError> {
        let deadline = tokio::time::Instant::now() + self.config.reload_timeout;
        loop {
            let now = workers(master);
            if !now.is_empty() && now.iter().all(|w| !before.contains(w)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(backend(
                    "reload nginx",
                    ErrorKind::Timeout,
                    format!("workers of the previous configuration still run after {:?}", self.config.reload_timeout),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn write_atomic(path: &Path, bytes: Vec<u8>) -> Result<(), RouterError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || deploy_core::store::file::atomic_file::replace(&path, &bytes))
        .await
        .map_err(|e| backend("write nginx configuration", ErrorKind::Other, e))?
        .map_err(|e| backend("write nginx configuration", ErrorKind::Unavailable, e))
}

async fn read_pid(path: &Path) -> Result<u32, RouterError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| backend("read the nginx pid file", ErrorKind::Unavailable, e))?;
    text.trim().parse().map_err(|e| backend("read the nginx pid file", ErrorKind::InvalidInput, e))
}

/// The pids of `master`'s children (its workers, including those shutting down).
fn workers(master: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // The fields after the parenthesised command: state, ppid, ...
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(master)
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Refuses values that could break out of an nginx string.
fn escape(value: &str) -> Result<String, RouterError> {
    if value.chars().any(|c| c == '"' || c == ';' || c == '{' || c == '}' || c.is_control()) {
        return Err(RouterError::Unsupported {
            capability: format!("header value {value:?} (quotes, braces, ';' or control characters)"),
        });
    }
    Ok(value.to_owned())
}

fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl NginxRouter {
    /// The split nginx's workers serve, from the status endpoint on `listen`.
    async fn live_split(&self, app: &AppId, listen: SocketAddr) -> Result<TrafficSplit, RouterError> {
        let host = if listen.ip().is_unspecified() {
            if listen.is_ipv4() { "127.0.0.1".to_owned() } else { "[::1]".to_owned() }
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        let url = format!("http://{host}:{}{STATUS_PATH}", listen.port());
        let failed = |e: deploy_core::http_client::HttpError| {
            let kind = deploy_core::error::Classify::kind(&e);
            backend("read nginx's status endpoint", kind, e)
        };
        let policy = deploy_core::http_client::HttpPolicy::default()
            .timeout(std::time::Duration::from_secs(5))
            .danger_allow_plain_http();
        let http = deploy_core::http_client::HttpClient::new(policy).map_err(failed)?;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| backend("read nginx's status endpoint", ErrorKind::InvalidInput, e))?;
        let answer = http.send(http.request(reqwest::Method::GET, parsed).map_err(failed)?).await.map_err(failed)?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(RouterError::NotFound { app: app.clone(), what: format!("nginx status endpoint {url}") });
        }
        if !answer.status().is_success() {
            let status = answer.status();
            return Err(backend(
                "read nginx's status endpoint",
                ErrorKind::Unavailable,
                format!("{url} answered {status}"),
            ));
        }
        let body = http.read_body(answer).await.map_err(failed)?;
        let text = String::from_utf8_lossy(&body).into_owned();
        parse_live(&text).ok_or_else(|| {
            backend("read nginx's status endpoint", ErrorKind::Other, format!("{url} answered {text:?}, not a split"))
        })
    }
}

/// `stable=75,canary=25` from the status endpoint.
fn parse_live(text: &str) -> Option<TrafficSplit> {
    let mut weights = Vec::new();
    for pair in text.trim().split(',') {
        let (track, percent) = pair.split_once('=')?;
        let track = Track::ALL.into_iter().find(|t| t.as_str() == track)?;
        weights.push((track, Percent::new(percent.parse().ok()?).ok()?));
    }
    TrafficSplit::new(weights).ok()
}

/// The split in a file this router wrote: the `split_clients` entries.
fn parse_split(text: &str) -> Option<TrafficSplit> {
    // The block's first line holds `${request_id}`: the entries start on the next.
    let after = text.split("split_clients").nth(1)?;
    let block = after.split_once('\n')?.1.split("\n}").next()?;
    let mut weights = Vec::new();
    let mut used = 0u32;
    for line in block.lines() {
        let line = line.trim();
        let mut parts = line.split_whitespace();
        let (Some(share), Some(target)) = (parts.next(), parts.next()) else { continue };
        let track = target.trim_end_matches(';').rsplit('_').next()?;
        let track = Track::ALL.into_iter().find(|t| t.as_str() == track)?;
        let percent =
            if share == "*" { 100u32.checked_sub(used)? } else { share.trim_end_matches('%').parse().ok()? };
        used += percent;
        weights.push((track, Percent::new(u8::try_from(percent).ok()?).ok()?));
    }
    TrafficSplit::new(weights).ok()
}

#[async_trait]
impl TrafficRouter for NginxRouter {
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::weights_only().with_header_routes()
    }

    async fn set_weights(&self, app: &AppId, split: &TrafficSplit) -> Result<(), RouterError> {
        let mut apps = self.apps.lock().await;
        let mut routing = apps.get(app).cloned().unwrap_or_default();
        routing.split = Some(split.clone());
        self.apply(app, &routing).await?;
        apps.insert(app.clone(), routing);
        Ok(())
    }

    async fn weights(&self, app: &AppId) -> Result<TrafficSplit, RouterError> {
        if self.config.status_endpoint {
            let listen = self.apps.lock().await.get(app).and_then(|r| r.listen);
            if let Some(listen) = listen {
                return self.live_split(app, listen).await;
            }
        }
        let text = match tokio::fs::read_to_string(self.file(app)).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RouterError::NotFound { app: app.clone(), what: "nginx configuration".into() });
            }
            Err(e) => return Err(backend("read nginx configuration", ErrorKind::Unavailable, e)),
        };
        parse_split(&text).ok_or_else(|| {
            backend("read nginx configuration", ErrorKind::Other, "no split_clients block deploy-rs can read")
        })
    }

    async fn set_header_route(&self, app: &AppId, route: &HeaderRoute) -> Result<(), RouterError> {
        let mut apps = self.apps.lock().await;
        let mut routing = apps.get(app).cloned().unwrap_or_default();
        routing.routes.retain(|r| r.header != route.header);
        routing.routes.push(route.clone());
        self.apply(app, &routing).await?;
        apps.insert(app.clone(), routing);
        Ok(())
    }

    async fn clear_header_routes(&self, app: &AppId) -> Result<(), RouterError> {
        let mut apps = self.apps.lock().await;
        let Some(mut routing) = apps.get(app).cloned() else { return Ok(()) };
        if routing.routes.is_empty() {
            return Ok(());
        }
        routing.routes.clear();
        self.apply(app, &routing).await?;
        apps.insert(app.clone(), routing);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_read_back_is_the_split_written() {
        let text = "split_clients \"${request_id}\" $k_weighted {\n    25% k_canary;\n    * k_stable; # 75%\n}\n";
        let split = parse_split(text).unwrap();
        assert_eq!(split.weight(Track::Canary).value(), 25);
        assert_eq!(split.weight(Track::Stable).value(), 75);
    }

    /// What the router declares is what tests/nginx.rs drives through a real nginx
    /// (weights, header routes of every match kind to any track); what it does not
    /// declare, mirroring, is refused before any file is written.
    #[tokio::test]
    async fn capabilities_are_honest_and_mirroring_is_refused() {
        use deploy_core::model::{Name, Namespace};
        use deploy_core::traffic::Mirror;
        let dir = tempfile::tempdir().unwrap();
        let config = NginxConfig::new(dir.path().join("nginx.conf"), dir.path().join("apps"));
        let router = NginxRouter::new(config, Arc::new(StaticEndpoints::default()));
        let caps = router.capabilities();
        assert!(caps.weights && caps.header_routes && !caps.mirroring && !caps.switch_only);
        assert!(caps.supports_split(&TrafficSplit::canary(Percent::new(10).unwrap())));
        let app = AppId::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap());
        let mirrored = router.set_mirror(&app, Track::Canary, &Mirror::new(Percent::new(10).unwrap())).await;
        assert!(matches!(mirrored, Err(RouterError::Unsupported { .. })), "{mirrored:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn header_values_that_could_escape_are_refused() {
        assert!(escape("always").is_ok());
        assert!(escape("a\"; }").is_err());
        assert_eq!(regex_escape("v1.2"), "v1\\.2");
    }
}
