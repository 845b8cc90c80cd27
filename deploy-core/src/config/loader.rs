//! Building a [`Config`] from its layers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::ConfigError;
use super::tree::{Config, insert, lookup, remove};
use crate::error::Classify;
use crate::model::{Environment, ValidationError, ValidationErrors};
use crate::secret::{SecretManager, SecretString};

type Check = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

#[derive(Clone)]
enum Layer {
    Value { name: String, value: Value },
    File { path: PathBuf, required: bool },
}

/// Collects the layers of a configuration and loads it; see the
/// [module docs](super). Layers apply in the order they are added, except that
/// secrets always come last.
#[derive(Clone, Default)]
pub struct ConfigLoader {
    layers: Vec<Layer>,
    secrets: Vec<(String, String)>,
    secret_manager: Option<Arc<dyn SecretManager>>,
    required: Vec<String>,
    checks: Vec<(String, String, Check)>,
}

/// `config.json` + production → `config.production.json`.
fn environment_path(base: &Path, environment: Environment) -> PathBuf {
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match base.extension() {
        Some(ext) => format!("{stem}.{}.{}", environment.as_str(), ext.to_string_lossy()),
        None => format!("{stem}.{}", environment.as_str()),
    };
    base.with_file_name(name)
}

/// Merges `top` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

/// An environment variable's text as a JSON value: booleans and numbers typed,
/// anything else a string.
fn env_value(raw: &str) -> Value {
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        _ => Value::String(raw.to_owned()),
    }
}

fn parse_file(path: &Path, text: &str) -> Result<Value, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(text).map_err(|e| {
            let key = key_at_line(text, e.line(), Syntax::Json);
            located(e.to_string(), key)
        }),
        #[cfg(feature = "toml")]
        Some("toml") => toml::from_str::<Value>(text).map_err(|e| e.to_string()),
        #[cfg(not(feature = "toml"))]
        Some("toml") => Err("reading TOML needs the `toml` feature of deploy-core".into()),
        #[cfg(feature = "yaml")]
        Some("yaml" | "yml") => serde_norway::from_str::<Value>(text).map_err(|e| {
            let key = e.location().and_then(|l| key_at_line(text, l.line(), Syntax::Yaml));
            located(e.to_string(), key)
        }),
        #[cfg(not(feature = "yaml"))]
        Some("yaml" | "yml") => Err("reading YAML needs the `yaml` feature of deploy-core".into()),
        _ => Err("unsupported format: use .json, .toml or .yaml".into()),
    }
}

/// How keys are written in a file format, for naming the key of a bad line.
#[derive(Clone, Copy)]
enum Syntax {
    Json,
    #[cfg_attr(not(feature = "yaml"), allow(dead_code, reason = "used by the yaml feature"))]
    Yaml,
}

fn located(message: String, key: Option<String>) -> String {
    match key {
        Some(key) => format!("{message} (at key `{key}`)"),
        None => message,
    }
}

/// The dotted path of the key written on 1-based `line` (or the nearest line
/// above it that holds a key), found from indentation for YAML and from the
/// nesting of braces for JSON. `None` when no key is in sight.
fn key_at_line(text: &str, line: usize, syntax: Syntax) -> Option<String> {
    let lines: Vec<&str> = text.lines().take(line.max(1)).collect();
    // (indent or depth, key) of the enclosing keys.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut last: Option<String> = None;
    for raw in &lines {
        let trimmed = raw.trim_start();
        let key = match syntax {
            Syntax::Yaml => {
                let content = trimmed.trim_start_matches("- ");
                (!content.starts_with('#'))
                    .then(|| content.split_once(':').map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_owned()))
                    .flatten()
                    .filter(|k| !k.is_empty() && !k.contains(' '))
            }
            Syntax::Json => trimmed
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .filter(|(_, after)| after.trim_start().starts_with(':'))
                .map(|(k, _)| k.to_owned()),
        };
        let level = match syntax {
            Syntax::Yaml => raw.len() - trimmed.len(),
            Syntax::Json => depth,
        };
        if let Some(key) = key {
            while stack.last().is_some_and(|(l, _)| *l >= level) {
                stack.pop();
            }
            stack.push((level, key));
            last = Some(stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join("."));
        }
        if let Syntax::Json = syntax {
            for c in raw.chars() {
                match c {
                    '{' | '[' => depth += 1,
                    '}' | ']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
    }
    last
}

impl ConfigLoader {
    /// An empty loader.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lowest layer: values used when nothing else sets them.
    #[must_use]
    pub fn defaults(self, value: Value) -> Self {
        self.layer("defaults", value)
    }

    /// A layer of values from anywhere (a parsed YAML document, a remote store).
    #[must_use]
    pub fn layer(mut self, name: impl Into<String>, value: Value) -> Self {
        self.layers.push(Layer::Value { name: name.into(), value });
        self
    }

    /// A file that must exist (`.json`; `.toml` with the `toml` feature; `.yaml` or
    /// `.yml` with the `yaml` feature).
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.layers.push(Layer::File { path: path.into(), required: true });
        self
    }

    /// A file read only if it exists.
    #[must_use]
    pub fn optional_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.layers.push(Layer::File { path: path.into(), required: false });
        self
    }

    /// The environment-specific file next to `base`, read if it exists:
    /// `config.json` → `config.production.json`.
    #[must_use]
    pub fn environment_file(self, base: impl AsRef<Path>, environment: Environment) -> Self {
        self.optional_file(environment_path(base.as_ref(), environment))
    }

    /// Variables named `<prefix>__A__B` set `a.b`, lower-cased. Pass
    /// `std::env::vars()` to read the process's environment.
    #[must_use]
    pub fn env_vars(self, prefix: &str, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let start = format!("{prefix}__");
        let mut value = Value::Object(Default::default());
        for (name, raw) in vars {
            if let Some(rest) = name.strip_prefix(&start)
                && !rest.is_empty()
                && rest.split("__").all(|p| !p.is_empty())
            {
                let key = rest.split("__").map(str::to_lowercase).collect::<Vec<_>>().join(".");
                insert(&mut value, &key, env_value(&raw));
            }
        }
        self.layer(format!("environment variables {prefix}__*"), value)
    }

    /// Reads the secret `secret_key` from the secret manager into `key`, above every
    /// other layer.
    #[must_use]
    pub fn secret(mut self, key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.secrets.push((key.into(), secret_key.into()));
        self
    }

    /// Sets the secret manager the secrets come from.
    #[must_use]
    pub fn secret_manager(mut self, manager: Arc<dyn SecretManager>) -> Self {
        self.secret_manager = Some(manager);
        self
    }

    /// Fails the load when `key` is unset.
    #[must_use]
    pub fn require(mut self, key: impl Into<String>) -> Self {
        self.required.push(key.into());
        self
    }

    /// Fails the load when `key` is set and `check` rejects its value, with `reason`.
    #[must_use]
    pub fn check(
        mut self,
        key: impl Into<String>,
        reason: impl Into<String>,
        check: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((key.into(), reason.into(), Arc::new(check)));
        self
    }

    /// Loads every layer. Every problem is collected into one
    /// [`ConfigError::Invalid`]; only a failing secret manager stops the load early.
    /// Files are read on tokio's blocking pool (`tokio::fs`), never on the
    /// runtime's own threads.
    #[tracing::instrument(skip_all, fields(config.layers = self.layers.len()), err)]
    pub async fn load(&self) -> Result<Config, ConfigError> {
        let mut errors = ValidationErrors::new();
        let mut values = Value::Object(Default::default());
        for layer in &self.layers {
            match layer {
                Layer::Value { name, value } => {
                    if value.is_object() {
                        merge(&mut values, value.clone());
                    } else {
                        errors.push(ValidationError::new("layer", name.as_str(), "must be an object"));
                    }
                }
                Layer::File { path, required } => match tokio::fs::read_to_string(path).await {
                    Ok(text) => match parse_file(path, &text) {
                        Ok(v @ Value::Object(_)) => merge(&mut values, v),
                        Ok(_) => errors.push(ValidationError::new(
                            "file",
                            path.display().to_string(),
                            "must hold a table/object",
                        )),
                        Err(reason) => errors.push(ValidationError::new("file", path.display().to_string(), reason)),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                    Err(e) => errors.push(ValidationError::new("file", path.display().to_string(), e.to_string())),
                },
            }
        }

        let mut secrets = Vec::new();
        if !self.secrets.is_empty() {
            match &self.secret_manager {
                None => errors.push(ValidationError::new(
                    "secrets",
                    self.secrets.len().to_string(),
                    "no secret manager was set",
                )),
                Some(manager) => {
                    for (key, secret_key) in &self.secrets {
                        match manager.get(secret_key).await {
                            Ok(secret) => match secret.value.expose_str() {
                                Ok(text) => {
                                    remove(&mut values, key);
                                    secrets.push((key.clone(), SecretString::from(text)));
                                }
                                Err(_) => errors.push(ValidationError::new(
                                    "secret",
                                    secret_key.as_str(),
                                    "is not UTF-8 text",
                                )),
                            },
                            Err(e) if e.is_not_found() => {
                                errors.push(ValidationError::new(
                                    "secret",
                                    secret_key.as_str(),
                                    format!("not found (for {key})"),
                                ));
                            }
                            Err(source) => return Err(ConfigError::Secret { key: key.clone(), source }),
                        }
                    }
                }
            }
        }
        let config = Config::from_parts(values, secrets);

        for key in &self.required {
            if !config.contains(key) || config.get(key).is_some_and(Value::is_null) {
                errors.push(ValidationError::new("required key", key.as_str(), "is not set"));
            }
        }
        for (key, reason, check) in &self.checks {
            if let Some(v) = lookup(config.values(), key)
                && !check(v)
            {
                // The value is shown: checks apply to plain values, never to secrets.
                errors.push(ValidationError::new(key.as_str(), v.to_string(), reason.as_str()));
            }
        }
        errors.into_result(config).map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{PutOptions, Secret, SecretBytes, SecretError};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Secrets(Mutex<BTreeMap<String, SecretBytes>>);

    #[async_trait::async_trait]
    impl SecretManager for Secrets {
        async fn get(&self, key: &str) -> Result<Secret, SecretError> {
            if key == "broken" {
                return Err(SecretError::backend("get", crate::error::ErrorKind::Unavailable, "vault sealed"));
            }
            let map = self.0.lock().unwrap();
            map.get(key).map(|v| Secret::new(v.clone(), 1)).ok_or_else(|| SecretError::NotFound { key: key.into() })
        }
        async fn get_version(&self, key: &str, _v: u64) -> Result<Secret, SecretError> {
            self.get(key).await
        }
        async fn put(&self, key: &str, value: SecretBytes, _o: PutOptions) -> Result<u64, SecretError> {
            self.0.lock().unwrap().insert(key.into(), value);
            Ok(1)
        }
        async fn delete(&self, key: &str) -> Result<(), SecretError> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
        async fn list(&self) -> Result<Vec<String>, SecretError> {
            Ok(self.0.lock().unwrap().keys().cloned().collect())
        }
    }

    fn manager() -> Arc<dyn SecretManager> {
        let m = Secrets::default();
        m.0.lock().unwrap().insert("app/db".into(), SecretBytes::from(b"hunter2".as_slice()));
        Arc::new(m)
    }

    #[tokio::test]
    async fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("config.json");
        std::fs::write(&base, r#"{"db": {"host": "file", "pool": 5}, "name": "from-file", "tags": ["a"]}"#).unwrap();
        std::fs::write(dir.path().join("config.production.json"), r#"{"db": {"host": "prod-file"}, "tags": ["p"]}"#)
            .unwrap();
        let config = ConfigLoader::new()
            .defaults(json!({"db": {"host": "default", "port": 5432, "password": "changeme"}, "debug": true}))
            .file(&base)
            .environment_file(&base, Environment::Production)
            .env_vars(
                "APP",
                [
                    ("APP__DB__POOL".into(), "20".into()),
                    ("APP__DEBUG".into(), "false".into()),
                    ("APP__REGION".into(), "eu-west-1".into()),
                    ("OTHER__X".into(), "1".into()),
                    ("APP____BAD".into(), "1".into()),
                ],
            )
            .secret("db.password", "app/db")
            .secret_manager(manager())
            .load()
            .await
            .unwrap();
        assert_eq!(
            config.values(),
            &json!({
                "db": {"host": "prod-file", "port": 5432, "pool": 20},
                "debug": false,
                "name": "from-file",
                "region": "eu-west-1",
                "tags": ["p"]
            })
        );
        assert_eq!(config.get_secret("db.password").unwrap().expose_secret(), "hunter2");
    }

    #[tokio::test]
    async fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{ nope").unwrap();
        std::fs::write(dir.path().join("config.ini"), "a = 1").unwrap();
        let err = ConfigLoader::new()
            .defaults(json!({"port": 70000}))
            .file(&bad)
            .file(dir.path().join("missing.json"))
            .optional_file(dir.path().join("also-missing.json"))
            .file(dir.path().join("config.ini"))
            .secret("db.password", "app/none")
            .secret_manager(manager())
            .require("db.host")
            .check("port", "must be a TCP port", |v| v.as_u64().is_some_and(|p| p <= 65535))
            .load()
            .await
            .unwrap_err();
        let ConfigError::Invalid(errors) = err else { panic!("{err:?}") };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["file", "file", "file", "secret", "required key", "port"], "{errors}");
        assert!(errors.to_string().contains("unsupported format"), "{errors}");
    }

    #[tokio::test]
    async fn a_failing_secret_manager_is_an_error_of_its_own() {
        let err = ConfigLoader::new().secret("x", "broken").secret_manager(manager()).load().await.unwrap_err();
        assert!(matches!(err, ConfigError::Secret { .. }));
        assert!(err.is_retryable());
    }

    #[cfg(feature = "toml")]
    #[tokio::test]
    async fn toml_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.toml");
        std::fs::write(&path, "name = \"shop\"\n[db]\nport = 5433\n").unwrap();
        let config = ConfigLoader::new().file(&path).load().await.unwrap();
        assert_eq!(config.get_as::<u16>("db.port").unwrap(), 5433);
    }

    #[cfg(feature = "yaml")]
    #[tokio::test]
    async fn yaml_files_and_their_errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("app.yaml");
        std::fs::write(&good, "name: shop\ndb:\n  port: 5433\n  hosts: [a, b]\n").unwrap();
        let config = ConfigLoader::new().file(&good).load().await.unwrap();
        assert_eq!(config.get_as::<u16>("db.port").unwrap(), 5433);
        assert_eq!(config.get("db.hosts"), Some(&json!(["a", "b"])));

        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "name: shop\ndb:\n  port: 5433\n  pool: [1, 2\n  user: app\n").unwrap();
        let err = ConfigLoader::new().file(&bad).load().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.yml"), "names the file: {text}");
        assert!(text.contains("line 5"), "names the line: {text}");
        assert!(text.contains("at key `db.user`") || text.contains("at key `db.pool`"), "names the key: {text}");
    }

    #[tokio::test]
    async fn json_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\n  \"db\": {\n    \"port\": 54x\n  }\n}\n").unwrap();
        let text = ConfigLoader::new().file(&bad).load().await.unwrap_err().to_string();
        assert!(text.contains("line 3") && text.contains("at key `db.port`"), "{text}");
    }

    #[test]
    fn keys_are_found_from_indentation_and_nesting() {
        let yaml = "a: 1\nb:\n  c:\n    d: x\n  e: y\nf: z\n";
        assert_eq!(key_at_line(yaml, 4, Syntax::Yaml).as_deref(), Some("b.c.d"));
        assert_eq!(key_at_line(yaml, 5, Syntax::Yaml).as_deref(), Some("b.e"));
        assert_eq!(key_at_line(yaml, 6, Syntax::Yaml).as_deref(), Some("f"));
        let json = "{\n \"a\": {\n  \"b\": 1,\n  \"c\": 2\n },\n \"d\": 3\n}";
        assert_eq!(key_at_line(json, 4, Syntax::Json).as_deref(), Some("a.c"));
        assert_eq!(key_at_line(json, 6, Syntax::Json).as_deref(), Some("d"));
    }

    #[test]
    fn environment_file_names() {
        assert_eq!(
            environment_path(Path::new("/etc/app/config.json"), Environment::Staging),
            Path::new("/etc/app/config.staging.json")
        );
        assert_eq!(environment_path(Path::new("app"), Environment::Production), Path::new("app.production"));
    }
}
