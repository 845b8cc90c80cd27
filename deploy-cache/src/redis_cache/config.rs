//! [`RedisConfig`]: where Redis is, how keys are named, and how long to wait.

use std::time::Duration;

/// Which Redis deployment a [`RedisCache`](crate::RedisCache) talks to.
///
/// URLs are `redis://[user:password@]host:port[/db]`, `rediss://…` for TLS (see
/// [`RedisConfig::tls_ca_file`]), or `redis+unix:///path?pass=…`; the password never
/// appears in `Debug`, in any form.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTopology {
    /// One server, through a connection manager that reconnects when the connection
    /// drops (a restarted server is picked up without a new client).
    Single {
        /// The server's URL.
        url: String,
    },
    /// A Redis Cluster: the client discovers the slot map from these seed nodes and
    /// follows `MOVED` / `ASK` redirections.
    Cluster {
        /// URLs of one or more of the cluster's nodes.
        nodes: Vec<String>,
    },
    /// A master and its replicas watched by Redis Sentinel: the Sentinels name the
    /// master, and after a failover the cache asks them again and writes to the
    /// promoted replica.
    Sentinel {
        /// URLs of the Sentinels (`redis://host:26379`; a Sentinel password goes in
        /// the URL).
        sentinels: Vec<String>,
        /// The name the Sentinels monitor the master under (`sentinel monitor NAME …`).
        service_name: String,
        /// The password of the master and its replicas (`requirepass`), if any.
        master_password: Option<String>,
    },
}

impl std::fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single { url } => f.debug_struct("Single").field("url", &redact_url(url)).finish(),
            Self::Cluster { nodes } => f
                .debug_struct("Cluster")
                .field("nodes", &nodes.iter().map(|url| redact_url(url)).collect::<Vec<_>>())
                .finish(),
            Self::Sentinel { sentinels, service_name, master_password } => f
                .debug_struct("Sentinel")
                .field("sentinels", &sentinels.iter().map(|url| redact_url(url)).collect::<Vec<_>>())
                .field("service_name", service_name)
                .field("master_password", &master_password.as_ref().map(|_| "[redacted]"))
                .finish(),
        }
    }
}

/// `url` with any `user:password@` replaced, and the value of any `pass` or
/// `password` query parameter (`redis+unix:///run/redis.sock?pass=…`, `unix://…`)
/// replaced, so that it can be logged.
pub(crate) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://[redacted]@{}", &base[..scheme_end], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if matches!(key.to_ascii_lowercase().as_str(), "pass" | "password") => {
                    format!("{key}=[redacted]")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Configuration of a [`RedisCache`](crate::RedisCache).
///
/// ```
/// use std::time::Duration;
/// use deploy_cache::RedisConfig;
///
/// let config = RedisConfig::single("redis://:s3cret@127.0.0.1:6379")
///     .key_prefix("deploy:")
///     .default_ttl(Duration::from_secs(300));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Where Redis is. Default: one server at `redis://127.0.0.1:6379`.
    pub topology: RedisTopology,
    /// Put in front of every key, so that several applications can share a Redis
    /// (`"deploy:"` turns `release:checkout` into `deploy:release:checkout`).
    /// Default: empty.
    pub key_prefix: String,
    /// Lifetime of values stored without a TTL of their own; `None` keeps them
    /// until Redis evicts them. Default: `None`.
    pub default_ttl: Option<Duration>,
    /// How long one connection attempt may take. Default: 1 s.
    pub connection_timeout: Duration,
    /// How long one command may wait for its answer; past it the call fails with a
    /// retryable timeout. Default: 1 s.
    pub response_timeout: Duration,
    /// How many times a dropped connection is re-established (with exponential
    /// backoff) before calls fail; the next call starts over. Default: 2.
    pub reconnect_retries: u32,
    /// Values larger than this are refused with `CacheError::TooLarge` before they
    /// are sent. Default: 512 MiB, Redis's own limit for a string.
    pub max_value_size: usize,
    /// The certificate authority (PEM file) that signed the server's certificate,
    /// for `rediss://` URLs; `None` trusts the platform's roots. Setting it with a
    /// plain `redis://` URL is an error: the CA would protect nothing.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self::single("redis://127.0.0.1:6379")
    }
}

impl RedisConfig {
    /// One Redis server at `url`.
    pub fn single(url: impl Into<String>) -> Self {
        Self::with_topology(RedisTopology::Single { url: url.into() })
    }

    /// A Redis Cluster reached through these seed nodes.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(RedisTopology::Cluster { nodes: nodes.into_iter().map(Into::into).collect() })
    }

    /// The master named `service_name` by these Sentinels, followed through failovers.
    pub fn sentinel<I, S>(sentinels: I, service_name: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(RedisTopology::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            service_name: service_name.into(),
            master_password: None,
        })
    }

    /// Sets the password of a Sentinel-monitored master (see
    /// [`RedisTopology::Sentinel`]); does nothing for the other topologies, whose
    /// passwords are in their URLs.
    #[must_use]
    pub fn master_password(mut self, password: impl Into<String>) -> Self {
        if let RedisTopology::Sentinel { master_password, .. } = &mut self.topology {
            *master_password = Some(password.into());
        }
        self
    }

    fn with_topology(topology: RedisTopology) -> Self {
        Self {
            topology,
            key_prefix: String::new(),
            default_ttl: None,
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            reconnect_retries: 2,
            max_value_size: 512 * 1024 * 1024,
            tls_ca_file: None,
        }
    }

    /// Sets [`RedisConfig::tls_ca_file`].
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Sets [`RedisConfig::key_prefix`].
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`RedisConfig::default_ttl`].
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Sets [`RedisConfig::connection_timeout`].
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets [`RedisConfig::response_timeout`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`RedisConfig::reconnect_retries`].
    #[must_use]
    pub fn reconnect_retries(mut self, retries: u32) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// Sets [`RedisConfig::max_value_size`].
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_debug() {
        let config = RedisConfig::cluster(["redis://admin:hunter2@10.0.0.1:7000", "redis://10.0.0.2:7000"]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://[redacted]@10.0.0.1:7000"), "{shown}");
        assert!(shown.contains("redis://10.0.0.2:7000"), "{shown}");
    }

    #[test]
    fn sentinel_passwords_never_reach_debug() {
        let config =
            RedisConfig::sentinel(["redis://:sentinel-pw@127.0.0.1:26379"], "cache").master_password("hunter2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("sentinel-pw"), "{shown}");
        assert!(shown.contains("service_name: \"cache\""), "{shown}");
    }

    #[test]
    fn redaction_leaves_urls_without_credentials_alone() {
        assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://[redacted]@h:1");
    }

    #[test]
    fn every_url_form_redis_accepts_is_redacted() {
        for (url, shown) in [
            ("redis+unix:///run/redis.sock?db=2&pass=hunter2", "redis+unix:///run/redis.sock?db=2&pass=[redacted]"),
            ("unix:///run/redis.sock?user=u&password=hunter2", "unix:///run/redis.sock?user=u&password=[redacted]"),
            ("rediss://u:hunter2@h:6380/0?protocol=resp3", "rediss://[redacted]@h:6380/0?protocol=resp3"),
            ("redis://u:hun@ter2@h:1", "redis://[redacted]@h:1"),
        ] {
            assert_eq!(redact_url(url), shown);
            let config = RedisConfig::single(url);
            assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        }
    }
}
