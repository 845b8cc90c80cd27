//! Generating Dockerfiles: a builder stage that compiles, a small runtime stage
//! that runs as a non-root user, with `HEALTHCHECK`, `EXPOSE` and an exec-form
//! `CMD`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The Dockerfile stage that compiles the artefacts (`FROM … AS builder`); not a
/// pipeline stage (deploy-core's `pipeline::BuildStage` builds a whole image).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompileStage {
    /// The base image, with a tag.
    pub image: String,
    /// The working directory.
    pub workdir: String,
    /// `COPY` instructions (source, destination) run before `run`, so that
    /// dependency manifests are cached apart from the sources.
    pub copy_first: Vec<(String, String)>,
    /// Commands run after `copy_first` (dependency fetches).
    pub prepare: Vec<String>,
    /// `COPY` instructions after `prepare` (usually the whole source tree).
    pub copy: Vec<(String, String)>,
    /// Commands that build.
    pub run: Vec<String>,
}

impl CompileStage {
    /// A stage on `image` working in `/src` that copies the whole context and runs
    /// `run`; set the public fields for dependency caching.
    pub fn new(image: impl Into<String>, run: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            image: image.into(),
            workdir: "/src".to_owned(),
            copy_first: Vec::new(),
            prepare: Vec::new(),
            copy: vec![(".".to_owned(), ".".to_owned())],
            run: run.into_iter().map(Into::into).collect(),
        }
    }
}

/// The user the runtime stage runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeUser {
    /// The user name.
    pub name: String,
    /// The numeric id, which Kubernetes' `runAsNonRoot` can verify.
    pub uid: u32,
    /// The command that creates the user, when the image does not have it.
    pub create: Option<String>,
}

impl RuntimeUser {
    /// A user the image already has, or a numeric id that needs no entry in
    /// `/etc/passwd`.
    pub fn new(name: impl Into<String>, uid: u32) -> Self {
        Self { name: name.into(), uid, create: None }
    }

    /// Sets the command that creates the user.
    #[must_use]
    pub fn create_with(mut self, command: impl Into<String>) -> Self {
        self.create = Some(command.into());
        self
    }
}

/// A `HEALTHCHECK` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Healthcheck {
    /// The command, exec form.
    pub command: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Grace period after start.
    pub start_period: Duration,
    /// Failures before `unhealthy`.
    pub retries: u32,
}

impl Healthcheck {
    /// A check running `command` every 30 s (timeout 3 s, 3 retries, 5 s grace).
    pub fn new(command: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            command: command.into_iter().map(Into::into).collect(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(3),
            start_period: Duration::from_secs(5),
            retries: 3,
        }
    }
}

/// A multi-stage Dockerfile for a service.
///
/// ```
/// use deploy_docker::dockerfile::{Preset, lint};
/// let dockerfile = Preset::Rust { binary: "checkout".into() }.spec(8080, "/health").render();
/// assert!(dockerfile.contains("FROM rust:1.88-slim-bookworm AS builder"));
/// assert!(dockerfile.contains("USER 10001"));
/// assert!(dockerfile.contains("HEALTHCHECK"));
/// assert!(lint(&dockerfile).is_empty(), "{:?}", lint(&dockerfile));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DockerfileSpec {
    /// The build stage, named `builder`; none for single-stage images.
    pub builder: Option<CompileStage>,
    /// The runtime base image, with a tag.
    pub runtime_image: String,
    /// Commands run in the runtime stage before the artefacts are copied
    /// (package installs).
    pub runtime_setup: Vec<String>,
    /// The user to run as.
    pub user: RuntimeUser,
    /// The runtime working directory.
    pub workdir: String,
    /// Artefacts copied from the builder (source in the builder, destination).
    pub artifacts: Vec<(String, String)>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Ports to document with `EXPOSE`.
    pub expose: Vec<u16>,
    /// The health check.
    pub healthcheck: Option<Healthcheck>,
    /// The command, exec form.
    pub cmd: Vec<String>,
}

impl DockerfileSpec {
    /// A single-stage spec running `cmd` on `runtime_image` as user `app` (10001).
    pub fn new(runtime_image: impl Into<String>, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            builder: None,
            runtime_image: runtime_image.into(),
            runtime_setup: Vec::new(),
            user: RuntimeUser { name: "app".to_owned(), uid: 10001, create: None },
            workdir: "/app".to_owned(),
            artifacts: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            expose: Vec::new(),
            healthcheck: None,
            cmd: cmd.into_iter().map(Into::into).collect(),
        }
    }

    /// Sets the builder stage.
    #[must_use]
    pub fn builder(mut self, stage: CompileStage) -> Self {
        self.builder = Some(stage);
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Exposes a port.
    #[must_use]
    pub fn expose(mut self, port: u16) -> Self {
        self.expose.push(port);
        self
    }

    /// Sets the health check.
    #[must_use]
    pub fn healthcheck(mut self, check: Healthcheck) -> Self {
        self.healthcheck = Some(check);
        self
    }

    /// Sets the user.
    #[must_use]
    pub fn user(mut self, user: RuntimeUser) -> Self {
        self.user = user;
        self
    }

    /// The Dockerfile text.
    pub fn render(&self) -> String {
        let mut out = String::from("# syntax=docker/dockerfile:1\n");
        if let Some(builder) = &self.builder {
            let _ = writeln!(out, "FROM {} AS builder", builder.image);
            let _ = writeln!(out, "WORKDIR {}", builder.workdir);
            for (from, to) in &builder.copy_first {
                let _ = writeln!(out, "COPY {from} {to}");
            }
            for command in &builder.prepare {
                let _ = writeln!(out, "RUN {command}");
            }
            for (from, to) in &builder.copy {
                let _ = writeln!(out, "COPY {from} {to}");
            }
            for command in &builder.run {
                let _ = writeln!(out, "RUN {command}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "FROM {}", self.runtime_image);
        for (key, value) in &self.labels {
            let _ = writeln!(out, "LABEL {key}={}", quote(value));
        }
        for command in &self.runtime_setup {
            let _ = writeln!(out, "RUN {command}");
        }
        if let Some(create) = &self.user.create {
            let _ = writeln!(out, "RUN {create}");
        }
        let _ = writeln!(out, "WORKDIR {}", self.workdir);
        for (key, value) in &self.env {
            let _ = writeln!(out, "ENV {key}={}", quote(value));
        }
        let stage = if self.builder.is_some() { "--from=builder " } else { "" };
        for (from, to) in &self.artifacts {
            let _ = writeln!(out, "COPY {stage}--chown={uid}:{uid} {from} {to}", uid = self.user.uid);
        }
        let _ = writeln!(out, "USER {}", self.user.uid);
        for port in &self.expose {
            let _ = writeln!(out, "EXPOSE {port}");
        }
        if let Some(check) = &self.healthcheck {
            // Docker rejects zero durations ("cannot be less than 1ms"): leave them out.
            let mut flags = String::new();
            for (flag, value) in
                [("interval", check.interval), ("timeout", check.timeout), ("start-period", check.start_period)]
            {
                if !value.is_zero() {
                    let _ = write!(flags, "--{flag}={}ms ", value.as_millis());
                }
            }
            let _ = writeln!(out, "HEALTHCHECK {flags}--retries={} CMD {}", check.retries, exec_form(&check.command));
        }
        let _ = writeln!(out, "CMD {}", exec_form(&self.cmd));
        out
    }
}

/// Ready-made specs for common service stacks: pinned base images, a builder
/// stage with cached dependencies, a non-root runtime, a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preset {
    /// A Cargo binary, built with `--locked`, on Debian slim.
    Rust {
        /// The binary's name.
        binary: String,
    },
    /// A static Go binary on Alpine.
    Go {
        /// The binary's name.
        binary: String,
    },
    /// A Python application from `requirements.txt`, run as `python -m <module>`.
    Python {
        /// The module to run.
        module: String,
    },
    /// A Node application with `package-lock.json`, run as `node <entry>`.
    Node {
        /// The entry script.
        entry: String,
    },
}

impl Preset {
    /// The spec for a service listening on `port` with a health endpoint at `path`.
    pub fn spec(&self, port: u16, path: &str) -> DockerfileSpec {
        let url = format!("http://127.0.0.1:{port}{path}");
        let wget = Healthcheck::new(["wget", "-q", "-O", "/dev/null", url.as_str()]);
        let alpine_user = |uid: u32| RuntimeUser {
            name: "app".to_owned(),
            uid,
            create: Some(format!("addgroup -S -g {uid} app && adduser -S -D -H -u {uid} -G app app")),
        };
        let spec = match self {
            Self::Rust { binary } => DockerfileSpec::new("debian:bookworm-slim", [format!("/usr/local/bin/{binary}")])
                .builder(CompileStage {
                    image: "rust:1.88-slim-bookworm".to_owned(),
                    workdir: "/src".to_owned(),
                    copy_first: Vec::new(),
                    prepare: Vec::new(),
                    copy: vec![(".".to_owned(), ".".to_owned())],
                    run: vec![format!("cargo build --release --locked --bin {binary}")],
                })
                .with_setup("apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*")
                .user(RuntimeUser {
                    name: "app".to_owned(),
                    uid: 10001,
                    create: Some("useradd --system --uid 10001 --no-create-home app".to_owned()),
                })
                .with_artifact(format!("/src/target/release/{binary}"), format!("/usr/local/bin/{binary}"))
                .healthcheck(Healthcheck::new(["curl", "-fsS", "-o", "/dev/null", url.as_str()])),
            Self::Go { binary } => DockerfileSpec::new("alpine:3.20", [format!("/usr/local/bin/{binary}")])
                .builder(CompileStage {
                    image: "golang:1.23-alpine".to_owned(),
                    workdir: "/src".to_owned(),
                    copy_first: vec![("go.mod go.sum".to_owned(), "./".to_owned())],
                    prepare: vec!["go mod download".to_owned()],
                    copy: vec![(".".to_owned(), ".".to_owned())],
                    run: vec![format!("CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o /out/{binary} .")],
                })
                .user(alpine_user(10001))
                .with_artifact(format!("/out/{binary}"), format!("/usr/local/bin/{binary}"))
                .healthcheck(wget),
            Self::Python { module } => DockerfileSpec::new("python:3.12-slim", ["python", "-m", module.as_str()])
                .builder(CompileStage {
                    image: "python:3.12-slim".to_owned(),
                    workdir: "/src".to_owned(),
                    copy_first: vec![("requirements.txt".to_owned(), ".".to_owned())],
                    prepare: vec!["pip install --no-cache-dir --prefix=/install -r requirements.txt".to_owned()],
                    copy: vec![(".".to_owned(), ".".to_owned())],
                    run: Vec::new(),
                })
                .user(RuntimeUser {
                    name: "app".to_owned(),
                    uid: 10001,
                    create: Some("useradd --system --uid 10001 --no-create-home app".to_owned()),
                })
                .env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .with_artifact("/install".to_owned(), "/usr/local".to_owned())
                .with_artifact("/src".to_owned(), "/app".to_owned())
                .healthcheck(Healthcheck::new([
                    "python",
                    "-c",
                    &format!("import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('{url}', timeout=2).status < 400 else 1)"),
                ])),
            Self::Node { entry } => DockerfileSpec::new("node:20-alpine", ["node", entry.as_str()])
                .builder(CompileStage {
                    image: "node:20-alpine".to_owned(),
                    workdir: "/src".to_owned(),
                    copy_first: vec![("package.json package-lock.json".to_owned(), "./".to_owned())],
                    prepare: vec!["npm ci --omit=dev".to_owned()],
                    copy: vec![(".".to_owned(), ".".to_owned())],
                    run: Vec::new(),
                })
                .user(RuntimeUser { name: "node".to_owned(), uid: 1000, create: None })
                .env("NODE_ENV", "production")
                .with_artifact("/src".to_owned(), "/app".to_owned())
                .healthcheck(wget),
        };
        spec.expose(port)
    }
}

impl DockerfileSpec {
    fn with_setup(mut self, command: &str) -> Self {
        self.runtime_setup.push(command.to_owned());
        self
    }

    fn with_artifact(mut self, from: String, to: String) -> Self {
        self.artifacts.push((from, to));
        self
    }
}

fn exec_form(words: &[String]) -> String {
    serde_json::to_string(words).unwrap_or_else(|_| "[]".to_owned())
}

fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::lint;

    #[test]
    fn every_preset_is_multi_stage_non_root_with_a_health_check_and_lints_clean() {
        let presets = [
            Preset::Rust { binary: "svc".into() },
            Preset::Go { binary: "svc".into() },
            Preset::Python { module: "svc".into() },
            Preset::Node { entry: "server.js".into() },
        ];
        for preset in presets {
            let text = preset.spec(8080, "/health").render();
            assert_eq!(text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM")), 2, "{text}");
            assert!(text.contains(" AS builder\n"), "{text}");
            assert!(text.contains("COPY --from=builder"), "{text}");
            assert!(text.contains("EXPOSE 8080\n"), "{text}");
            assert!(
                text.contains("HEALTHCHECK --interval=30000ms --timeout=3000ms --start-period=5000ms --retries=3 CMD"),
                "{text}"
            );
            assert!(text.contains("127.0.0.1:8080/health"), "{text}");
            let user = text.lines().rev().find(|l| l.starts_with("USER ")).unwrap();
            assert_ne!(user, "USER 0", "{text}");
            assert!(text.lines().last().unwrap().starts_with("CMD [\""), "{text}");
            let findings = lint(&text);
            assert!(findings.is_empty(), "{preset:?}: {findings:?}\n{text}");
        }
    }

    #[test]
    fn single_stage_spec_renders_labels_env_and_exec_form() {
        let text = DockerfileSpec::new("alpine:3.20", ["/bin/app", "--port", "80"])
            .label("org.opencontainers.image.source", "https://example.com/app")
            .env("MODE", "a \"quoted\" value")
            .expose(80)
            .render();
        assert!(text.contains("FROM alpine:3.20\n"));
        assert!(text.contains("LABEL org.opencontainers.image.source=\"https://example.com/app\"\n"));
        assert!(text.contains("ENV MODE=\"a \\\"quoted\\\" value\"\n"));
        assert!(text.ends_with("CMD [\"/bin/app\",\"--port\",\"80\"]\n"));
        assert!(!text.contains("--from=builder"));
    }

    #[test]
    fn zero_health_check_durations_are_left_out() {
        let mut check = Healthcheck::new(["true"]);
        check.start_period = Duration::ZERO;
        let text = DockerfileSpec::new("alpine:3.20", ["app"]).healthcheck(check).render();
        assert!(
            text.contains("HEALTHCHECK --interval=30000ms --timeout=3000ms --retries=3 CMD [\"true\"]\n"),
            "{text}"
        );
    }
}
