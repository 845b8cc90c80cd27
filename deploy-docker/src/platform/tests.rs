use super::container_spec::{limits, revision};
use super::hooks::bounded_tail;
use super::*;
use deploy_core::model::{EnvVar, ImageRef, Name, Namespace, Probe};

fn spec() -> AppSpec {
    AppSpec::new(Namespace::new("shop").unwrap(), Name::new("web").unwrap(), ImageRef::parse("shop/web:1").unwrap())
}

fn release(v: &str) -> Release {
    Release::new(Version::new(v).unwrap(), ImageRef::parse(&format!("shop/web:{v}")).unwrap())
}

#[test]
fn revision_changes_with_what_makes_the_container_only() {
    let a = revision(&spec(), &[], &release("1"), None);
    assert_eq!(a, revision(&spec(), &[], &release("1"), Some(&Workload::default())));
    assert_ne!(a, revision(&spec(), &[], &release("2"), None));
    assert_ne!(a, revision(&spec(), &[EnvVar::value("A", "1").unwrap()], &release("1"), None));
    assert_eq!(a, revision(&spec().replicas(7), &[], &release("1"), None), "replicas do not change the containers");
    assert_ne!(a, revision(&spec(), &[], &release("1"), Some(&Workload::default().args(["-v"]))));
    let limited = spec().resources(deploy_core::model::Resources::new(
        Default::default(),
        deploy_core::model::ResourceList::new("500m", "64Mi").unwrap(),
    ));
    assert_ne!(a, revision(&limited, &[], &release("1"), None));
}

#[test]
fn resources_become_limits() {
    let limited = spec().resources(deploy_core::model::Resources::new(
        deploy_core::model::ResourceList::new("250m", "32Mi").unwrap(),
        deploy_core::model::ResourceList::new("1500m", "64Mi").unwrap(),
    ));
    let l = limits(&limited);
    assert_eq!(l.nano_cpus, Some(1_500_000_000));
    assert_eq!(l.memory_bytes, Some(64 * 1024 * 1024));
    assert_eq!(l.memory_reservation_bytes, Some(32 * 1024 * 1024));
    assert_eq!(l.cpu_shares, Some(256));
}

#[test]
fn log_tails_are_bounded() {
    let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    assert_eq!(bounded_tail(&lines, 2), "line 98\nline 99");
    let long = vec!["x".repeat(10_000)];
    assert!(bounded_tail(&long, 5).len() <= 4096 + "[…]".len());
}

#[tokio::test]
async fn probes_become_health_checks_and_secrets_are_refused() {
    let docker = Docker::connect_with_http("tcp://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION).unwrap();
    let platform = DockerPlatform::new(docker, PlatformConfig::default().network(NetworkName::new("n").unwrap()));
    let probe = Probe::http("/health", 8080).period(std::time::Duration::from_secs(2).into());
    let check = platform.health_check(&probe);
    assert_eq!(check.test.join(" "), "CMD wget -q -O /dev/null http://127.0.0.1:8080/health");
    assert_eq!(check.interval, Duration::from_secs(2));
    assert_eq!(check.retries, 3);

    let with_secret = spec().env(EnvVar::from_secret("DB", Name::new("db").unwrap(), "password").unwrap());
    let err = platform
        .container_spec(&with_secret, &with_secret.env, None, Track::Stable, &release("1"), "r")
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Invalid { .. }), "{err:?}");
    let ok =
        platform.container_spec(&spec().readiness(probe), &[], None, Track::Blue, &release("1"), "r").await.unwrap();
    assert_eq!(ok.network_aliases, ["web-blue"]);
    assert_eq!(ok.labels[labels::TRACK], "blue");
    assert_eq!(ok.labels[labels::VERSION], "1");
    assert!(ok.health.is_some());
}
