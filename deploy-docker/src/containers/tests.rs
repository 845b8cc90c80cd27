use std::time::Duration;

use super::*;

#[test]
fn spec_becomes_the_engine_body() {
    let spec = ContainerSpec::new("web-1", "shop/web:1")
        .env("A", "1")
        .port(PortMapping::loopback(8080))
        .volume(VolumeMount::new("/srv/data", "/data", true))
        .network("shop", ["web", "web-blue"])
        .restart(RestartPolicy::OnFailure { max_retries: 2 })
        .health(ContainerHealthcheck::new(vec!["CMD".into(), "true".into()]).interval(Duration::from_secs(1)));
    let body = spec.to_body();
    let host = body.host_config.clone().unwrap();
    assert_eq!(body.env, Some(vec!["A=1".to_owned()]));
    assert_eq!(host.binds, Some(vec!["/srv/data:/data:ro".to_owned()]));
    let binding = &host.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(host.restart_policy.unwrap().maximum_retry_count, Some(2));
    assert_eq!(host.network_mode.as_deref(), Some("shop"));
    let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["shop"];
    assert_eq!(endpoint.aliases.as_deref(), Some(&["web".to_owned(), "web-blue".to_owned()][..]));
    assert_eq!(body.healthcheck.unwrap().interval, Some(1_000_000_000));
}

#[test]
fn debug_hides_environment_values() {
    let spec = ContainerSpec::new("x", "y").env("DATABASE_PASSWORD", "hunter2");
    let debug = format!("{spec:?}");
    assert!(debug.contains("DATABASE_PASSWORD") && !debug.contains("hunter2"), "{debug}");
}
