//! `rediss://` against a real redis-server serving TLS with certificates the test
//! makes: the CA file is honoured, another CA or none is refused, and a plain
//! connection to the TLS port gets nothing.

use std::time::Duration;

use bytes::Bytes;
use deploy_cache::{RedisCache, RedisConfig};
use deploy_core::cache::Cache;
use deploy_core::error::{Classify, ErrorKind};

use crate::support::TlsRedisServer;

fn config(url: String) -> RedisConfig {
    RedisConfig::single(url).connection_timeout(Duration::from_secs(2)).response_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn rediss_with_the_servers_ca_file_stores_and_reads() {
    let server = TlsRedisServer::start();
    let cache = RedisCache::connect(config(server.url()).tls_ca_file(&server.ca_file)).await.unwrap();
    cache.set("tls:key", Bytes::from_static(b"over tls"), None).await.unwrap();
    assert_eq!(cache.get("tls:key").await.unwrap(), Some(Bytes::from_static(b"over tls")));
}

#[tokio::test]
async fn another_ca_the_platform_roots_or_plain_text_are_refused() {
    let server = TlsRedisServer::start();
    let err = RedisCache::connect(config(server.url()).tls_ca_file(&server.other_ca_file)).await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(RedisCache::connect(config(server.url())).await.is_err(), "a test CA is not a platform root");
    let plain = format!("redis://127.0.0.1:{}", server.tls_port);
    assert!(RedisCache::connect(config(plain.clone())).await.is_err());
    // A CA file with a plain URL would protect nothing: refused before connecting.
    let err = RedisCache::connect(config(plain).tls_ca_file(&server.ca_file)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not a rediss:// url"), "{err}");
}

#[tokio::test]
async fn every_url_form_stays_out_of_debug_and_traces() {
    let capture = crate::trace_capture::TraceCapture::default();
    let _guard = capture.set_default();
    let server = crate::support::RedisServer::start();
    let port = server.port();
    // The server has no password: AUTH with one fails, and nothing may show it.
    for url in [
        format!("redis://default:hunter2-url@127.0.0.1:{port}"),
        format!("rediss://default:hunter2-url@127.0.0.1:{port}"),
        "redis+unix:///nonexistent/redis.sock?pass=hunter2-url".to_owned(),
        "unix:///nonexistent/redis.sock?password=hunter2-url".to_owned(),
    ] {
        let config = config(url);
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        if let Err(e) = RedisCache::connect(config).await {
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
    }
    let cache = RedisCache::connect(config(server.url())).await.unwrap();
    cache.set("k", Bytes::from_static(b"v"), None).await.unwrap();
    capture.assert_free_of(&["hunter2"]);
}
