//! Every version of a configuration, with diffs and rollback.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::tree::leaves;
use super::{Config, ConfigError};

/// How a key changed between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// Set in the newer version only.
    Added,
    /// Set in the older version only.
    Removed,
    /// Set in both, to different values.
    Changed,
}

/// One key's change. Secret values are `[redacted]`: a diff shows that a secret
/// changed, never what it was or became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConfigChange {
    /// The dotted key.
    pub key: String,
    /// How it changed.
    pub kind: ChangeKind,
    /// The older value as JSON text.
    pub old: Option<String>,
    /// The newer value as JSON text.
    pub new: Option<String>,
}

impl fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ChangeKind::Added => write!(f, "+ {} = {}", self.key, self.new.as_deref().unwrap_or("")),
            ChangeKind::Removed => write!(f, "- {} = {}", self.key, self.old.as_deref().unwrap_or("")),
            ChangeKind::Changed => write!(
                f,
                "~ {}: {} -> {}",
                self.key,
                self.old.as_deref().unwrap_or(""),
                self.new.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Every key that differs between `old` and `new`, sorted by key.
fn diff(old: &Config, new: &Config) -> Vec<ConfigChange> {
    const REDACTED: &str = "[redacted]";
    let mut entries: std::collections::BTreeMap<String, (Option<String>, Option<String>)> = Default::default();
    let (old_leaves, new_leaves) = (leaves(&old.values), leaves(&new.values));
    for (k, v) in &old_leaves {
        entries.entry(k.clone()).or_default().0 = Some(v.to_string());
    }
    for (k, v) in &new_leaves {
        entries.entry(k.clone()).or_default().1 = Some(v.to_string());
    }
    let mut changes: Vec<ConfigChange> = entries
        .into_iter()
        .filter(|(_, (o, n))| o != n)
        .map(|(key, (old, new))| {
            let kind = match (&old, &new) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Removed,
                _ => ChangeKind::Changed,
            };
            ConfigChange { key, kind, old, new }
        })
        .collect();
    // Secrets: compared in constant time, never shown. A key that moved between
    // plain and secret is reported with the plain side shown and the secret side
    // redacted.
    let secret_keys: std::collections::BTreeSet<&String> = old.secrets.keys().chain(new.secrets.keys()).collect();
    for key in secret_keys {
        let (o, n) = (old.secrets.get(key), new.secrets.get(key));
        let old_text = o.map(|_| REDACTED.to_owned()).or_else(|| old_leaves.get(key).map(|v| v.to_string()));
        let new_text = n.map(|_| REDACTED.to_owned()).or_else(|| new_leaves.get(key).map(|v| v.to_string()));
        changes.retain(|c| &c.key != key);
        let kind = match (&old_text, &new_text) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ if o.is_some() && n.is_some() && o == n => continue,
            _ => ChangeKind::Changed,
        };
        changes.push(ConfigChange { key: key.clone(), kind, old: old_text, new: new_text });
    }
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    changes
}

/// One stored version.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConfigVersion {
    /// Its number: 1 for the first, one more for each later one.
    pub number: u64,
    /// The configuration.
    pub config: Arc<Config>,
    /// When it was stored.
    pub at: Timestamp,
    /// Why (`deploy 2.1.0`, `rollback to 3`).
    pub note: String,
}

/// Every version of a configuration. Nothing is ever deleted: a rollback stores
/// the old configuration again as the newest version, so the history shows it.
///
/// ```
/// use deploy_core::config::{ChangeKind, Config, ConfigHistory};
/// let mut history = ConfigHistory::new();
/// history.push(Config::from_parts(serde_json::json!({"replicas": 2}), Vec::<(String, _)>::new()), "initial");
/// history.push(Config::from_parts(serde_json::json!({"replicas": 5}), Vec::<(String, _)>::new()), "scale up");
/// let changes = history.diff(1, 2).unwrap();
/// assert_eq!((changes[0].key.as_str(), changes[0].kind), ("replicas", ChangeKind::Changed));
/// let v = history.rollback(1, "too expensive").unwrap();
/// assert_eq!(v, 3);
/// assert_eq!(history.current().unwrap().config.get("replicas").unwrap(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConfigHistory {
    versions: Vec<ConfigVersion>,
}

impl ConfigHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `config` as the newest version and returns its number.
    pub fn push(&mut self, config: Config, note: impl Into<String>) -> u64 {
        self.push_shared(Arc::new(config), note.into())
    }

    fn push_shared(&mut self, config: Arc<Config>, note: String) -> u64 {
        let number = self.versions.len() as u64 + 1;
        self.versions.push(ConfigVersion { number, config, at: Timestamp::now(), note });
        number
    }

    /// The newest version.
    pub fn current(&self) -> Option<&ConfigVersion> {
        self.versions.last()
    }

    /// Version `number`.
    pub fn get(&self, number: u64) -> Result<&ConfigVersion, ConfigError> {
        usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.versions.get(i))
            .ok_or(ConfigError::UnknownVersion { number })
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> &[ConfigVersion] {
        &self.versions
    }

    /// What changed from version `from` to version `to`.
    pub fn diff(&self, from: u64, to: u64) -> Result<Vec<ConfigChange>, ConfigError> {
        Ok(diff(&self.get(from)?.config, &self.get(to)?.config))
    }

    /// Stores version `number` again as the newest and returns the new number.
    pub fn rollback(&mut self, number: u64, note: impl Into<String>) -> Result<u64, ConfigError> {
        let config = Arc::clone(&self.get(number)?.config);
        Ok(self.push_shared(config, format!("rollback to {number}: {}", note.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use serde_json::json;

    fn cfg(values: serde_json::Value, password: &str) -> Config {
        Config::from_parts(values, [("db.password", SecretString::from(password))])
    }

    #[test]
    fn diffs_show_every_change_and_hide_secrets() {
        let mut h = ConfigHistory::new();
        h.push(cfg(json!({"db": {"host": "a", "pool": 5}, "old": true}), "first-pass"), "v1");
        h.push(cfg(json!({"db": {"host": "b", "pool": 5}, "new": 1}), "second-pass"), "v2");
        h.push(cfg(json!({"db": {"host": "b", "pool": 5}, "new": 1}), "second-pass"), "v3");
        let changes = h.diff(1, 2).unwrap();
        let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            ["~ db.host: \"a\" -> \"b\"", "~ db.password: [redacted] -> [redacted]", "+ new = 1", "- old = true"]
        );
        assert!(h.diff(2, 3).unwrap().is_empty(), "equal secrets are not a change");
        assert!(!format!("{changes:?}").contains("-pass"));
    }

    #[test]
    fn rollback_appends_and_keeps_everything() {
        let mut h = ConfigHistory::new();
        h.push(cfg(json!({"v": 1}), "p"), "one");
        h.push(cfg(json!({"v": 2}), "p"), "two");
        assert_eq!(h.rollback(1, "bad release").unwrap(), 3);
        assert_eq!(h.versions().len(), 3);
        assert_eq!(h.current().unwrap().config.get("v").unwrap(), 1);
        assert!(h.current().unwrap().note.starts_with("rollback to 1"));
        assert!(matches!(h.rollback(9, "x"), Err(ConfigError::UnknownVersion { number: 9 })));
        assert!(h.get(0).is_err());
    }
}
