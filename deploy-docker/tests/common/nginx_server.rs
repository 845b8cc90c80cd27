//! An nginx master the test starts on a free loopback port with a prefix
//! directory it owns, stopped with `nginx -s quit` on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use deploy_docker::nginx::NginxConfig;

use super::{free_port, require_binary};

pub const NGINX: &str = "/usr/sbin/nginx";

/// An nginx master on a free loopback port with its own prefix; `nginx -s quit` on drop.
pub struct Nginx {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Nginx {
    pub fn start() -> Self {
        require_binary(NGINX, "nginx");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["conf.d", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = free_port();
        let p = d.display();
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nworker_processes 2;\nworker_rlimit_nofile 8192;\nevents {{ worker_connections 4096; }}\nhttp {{\n    access_log off;\n    \
                 client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp;\n    \
                 uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;\n    include {p}/conf.d/*.conf;\n}}\n"
            ),
        )
        .unwrap();
        let status = Command::new(NGINX)
            .args(["-e", &format!("{p}/error.log"), "-c"])
            .arg(d.join("nginx.conf"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "nginx did not start: {}",
            std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
        );
        Self { dir, port }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> NginxConfig {
        NginxConfig::new(self.path().join("nginx.conf"), self.path().join("conf.d"))
            .pid_file(self.path().join("nginx.pid"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new(NGINX).args(["-s", "quit", "-c"]).arg(self.dir.path().join("nginx.conf")).status();
        // Wait for the master to go, so the temp dir outlives it.
        let pid: PathBuf = self.dir.path().join("nginx.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
