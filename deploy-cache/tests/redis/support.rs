//! Real Redis servers for the tests: started as child processes on free loopback
//! ports, killed (and their temp dirs removed) on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const MISSING: &str = "redis-server is not installed: this test needs a real Redis; \
                       install Debian's package with `apt-get install -y redis-server redis-tools`";

/// Fails the test (never skips) when the Redis binaries are missing.
fn require(binary: &str) {
    match Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => {}
        Err(e) => panic!("{MISSING} ({binary}: {e})"),
    }
}

/// A loopback port that nothing listens on now (and whose cluster bus port, +10000,
/// is free too when `with_bus`).
pub fn free_port(with_bus: bool) -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) -> Child {
    require("redis-server");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
    wait_for_pong(port);
    child
}

/// Waits until the server on `port` answers PING.
fn wait_for_pong(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut reply = [0u8; 16];
            if stream.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = stream.read(&mut reply)
                && reply[..n].starts_with(b"+PONG")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not answer PING within 10 s");
}

/// One redis-server.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        let port = free_port(false);
        let dir = TempDir::new().unwrap();
        let child = spawn_redis(port, dir.path(), &[]);
        Self { port, dir, child: Some(child) }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: it keeps no data).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_redis(self.port, self.dir.path(), &[]));
    }
}

/// A redis-server serving TLS on `tls_port` (and plain on another port, for the
/// readiness check), with a certificate authority and a server certificate for
/// 127.0.0.1 made with `openssl` for this server alone.
pub struct TlsRedisServer {
    pub tls_port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub ca_file: std::path::PathBuf,
    /// Another CA, which signed nothing here.
    pub other_ca_file: std::path::PathBuf,
    _server: RedisServer,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("the Redis TLS test makes its certificates with openssl: {e}"));
    assert!(status.success(), "openssl {args:?} failed");
}

impl TlsRedisServer {
    pub fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        for ca in ["ca", "other-ca"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    &format!("/CN=deploy-rs test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
        );
        let port = free_port(false);
        let tls_port = free_port(false);
        let child = spawn_redis(
            port,
            d,
            &[
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &d.join("server.pem").display().to_string(),
                "--tls-key-file",
                &d.join("server.key").display().to_string(),
                "--tls-ca-cert-file",
                &d.join("ca.pem").display().to_string(),
                "--tls-auth-clients",
                "no",
            ],
        );
        let (ca_file, other_ca_file) = (d.join("ca.pem"), d.join("other-ca.pem"));
        Self { tls_port, ca_file, other_ca_file, _server: RedisServer { port, dir, child: Some(child) } }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `redis-cli` with these arguments and returns its standard output.
pub fn redis_cli(args: &[&str]) -> String {
    require("redis-cli");
    let output = Command::new("redis-cli").args(args).output().unwrap();
    assert!(output.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A three-node Redis Cluster (three primaries, no replicas).
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port(true);
                let dir = TempDir::new().unwrap();
                let child = spawn_redis(
                    port,
                    dir.path(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ],
                );
                RedisServer { port, dir, child: Some(child) }
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(&args);
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let all_ok = self.nodes.iter().all(|node| {
                let info = redis_cli(&["-p", &node.port.to_string(), "cluster", "info"]);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            });
            if all_ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the redis cluster did not reach cluster_state:ok within 20 s");
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }
}

/// A master, one replica and three Sentinels monitoring them as `cache`, all on
/// loopback (Debian's `redis-server` and `redis-sentinel`).
pub struct RedisSentinelSet {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<RedisServer>,
}

/// The name the Sentinels monitor the master under.
pub const SENTINEL_SERVICE: &str = "cache";

fn spawn_sentinel(port: u16, dir: &Path, master_port: u16) -> Child {
    if let Err(e) = Command::new("redis-sentinel").arg("--version").stdout(Stdio::null()).status() {
        panic!(
            "redis-sentinel is not installed: the Sentinel tests need it; \
             install Debian's package with `apt-get install -y redis-sentinel` ({e})"
        );
    }
    // Sentinel rewrites its config file: each one gets its own, in its own dir.
    let config = dir.join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
             sentinel failover-timeout {SENTINEL_SERVICE} 10000\n\
             sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-sentinel")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start redis-sentinel: {e}"));
    wait_for_pong(port);
    child
}

impl RedisSentinelSet {
    /// Starts the five servers and waits until every Sentinel knows the replica and
    /// the two other Sentinels (so that a failover can be agreed).
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica_port = free_port(false);
        let replica_dir = TempDir::new().unwrap();
        let child =
            spawn_redis(replica_port, replica_dir.path(), &["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let replica = RedisServer { port: replica_port, dir: replica_dir, child: Some(child) };
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port(false);
                let dir = TempDir::new().unwrap();
                let child = spawn_sentinel(port, dir.path(), master.port);
                RedisServer { port, dir, child: Some(child) }
            })
            .collect();
        let set = Self { master, replica, sentinels };
        set.wait_until_monitored();
        set
    }

    fn wait_until_monitored(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.sentinels.iter().all(|sentinel| {
                let port = sentinel.port.to_string();
                let master = redis_cli(&["-p", &port, "SENTINEL", "MASTER", SENTINEL_SERVICE]);
                let fields: Vec<&str> = master.lines().collect();
                let field =
                    |name: &str| fields.iter().position(|f| *f == name).and_then(|i| fields.get(i + 1)).copied();
                field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
            });
            let synced = redis_cli(&["-p", &self.replica.port.to_string(), "INFO", "replication"])
                .contains("master_link_status:up");
            if ready && synced {
                return;
            }
            assert!(Instant::now() < deadline, "the sentinels did not see the replica and each other within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The master's port as the first live Sentinel reports it now.
    pub fn reported_master_port(&self) -> Option<u16> {
        let port = self.sentinels[0].port.to_string();
        let reply = redis_cli(&["-p", &port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE]);
        reply.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}
