//! Objects at the edge of the cluster: an Istio ingress `Gateway` and mesh
//! `Telemetry`, a Gateway API `Gateway`, and the ingress-nginx controller's
//! `nginx-configuration` ConfigMap. The custom kinds are typed from the upstream CRDs.

use deploy_core::model::Namespace as ModelNamespace;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::manifest::custom::custom_kind;

custom_kind!(
    /// `networking.istio.io/v1` Gateway: the ports and hosts an Istio ingress gateway serves.
    IstioGateway as "Gateway", IstioGatewaySpec, "networking.istio.io", "v1", "gateways"
);
custom_kind!(
    /// `telemetry.istio.io/v1` Telemetry: tracing, metrics and access logs of the mesh.
    Telemetry, TelemetrySpec, "telemetry.istio.io", "v1", "telemetries"
);
custom_kind!(
    /// `gateway.networking.k8s.io/v1` Gateway: listeners of a Gateway API implementation.
    Gateway, GatewaySpec, "gateway.networking.k8s.io", "v1", "gateways"
);

impl IstioGateway {
    /// An Istio Gateway `name` in `namespace` on the ingress gateway pods
    /// (`istio: ingressgateway`), serving `hosts` on HTTP 80 (redirected to HTTPS) and
    /// HTTPS 443 with the certificate of Secret `tls_secret`.
    pub fn https(namespace: &ModelNamespace, name: &str, hosts: Vec<String>, tls_secret: &str) -> Self {
        Self::new(
            namespace,
            name,
            IstioGatewaySpec {
                selector: BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]),
                servers: vec![
                    IstioServer {
                        port: IstioPort { number: 80, name: "http".into(), protocol: "HTTP".into() },
                        hosts: hosts.clone(),
                        tls: Some(IstioServerTls { https_redirect: Some(true), mode: None, credential_name: None }),
                    },
                    IstioServer {
                        port: IstioPort { number: 443, name: "https".into(), protocol: "HTTPS".into() },
                        hosts,
                        tls: Some(IstioServerTls {
                            https_redirect: None,
                            mode: Some("SIMPLE".into()),
                            credential_name: Some(tls_secret.to_owned()),
                        }),
                    },
                ],
            },
        )
    }
}

/// Istio Gateway `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IstioGatewaySpec {
    /// Labels of the gateway pods that serve it.
    pub selector: BTreeMap<String, String>,
    /// What it serves.
    pub servers: Vec<IstioServer>,
}

/// One server (port and hosts) of an Istio Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IstioServer {
    /// The port.
    pub port: IstioPort,
    /// The hosts served there.
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IstioServerTls>,
}

/// A port of an Istio Gateway server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IstioPort {
    /// The port number.
    pub number: u16,
    /// Its name.
    pub name: String,
    /// `HTTP`, `HTTPS`, `GRPC`, `TCP` ...
    pub protocol: String,
}

/// TLS of an Istio Gateway server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IstioServerTls {
    /// Redirect plain HTTP to HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// `SIMPLE`, `MUTUAL`, `PASSTHROUGH` ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The Secret holding the certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
}

/// Telemetry `spec`: tracing sampling and access logs through named providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TelemetrySpec {
    /// Tracing settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<TelemetryTracing>,
    /// Access-log settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_logging: Vec<TelemetryAccessLogging>,
}

/// A provider named in the mesh config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TelemetryProvider {
    /// The provider's name.
    pub name: String,
}

/// Tracing of a Telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TelemetryTracing {
    /// Where spans go.
    pub providers: Vec<TelemetryProvider>,
    /// The share of requests traced, 0 to 100.
    pub random_sampling_percentage: f64,
}

/// Access logging of a Telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TelemetryAccessLogging {
    /// Where logs go (`envoy` writes them to the proxy's stdout).
    pub providers: Vec<TelemetryProvider>,
}

/// Mesh-wide Telemetry `mesh-default` in `root_namespace` (usually `istio-system`):
/// traces `sampling_percent` % of requests through `tracing_provider` and writes
/// Envoy access logs.
pub fn mesh_telemetry(root_namespace: &ModelNamespace, tracing_provider: &str, sampling_percent: f64) -> Telemetry {
    Telemetry::new(
        root_namespace,
        "mesh-default",
        TelemetrySpec {
            tracing: vec![TelemetryTracing {
                providers: vec![TelemetryProvider { name: tracing_provider.to_owned() }],
                random_sampling_percentage: sampling_percent.clamp(0.0, 100.0),
            }],
            access_logging: vec![TelemetryAccessLogging {
                providers: vec![TelemetryProvider { name: "envoy".to_owned() }],
            }],
        },
    )
}

/// Gateway API Gateway `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GatewaySpec {
    /// The GatewayClass that implements it.
    pub gateway_class_name: String,
    /// Where it listens.
    pub listeners: Vec<Listener>,
}

/// A listener of a Gateway API Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Listener {
    /// Its name, referenced by routes' `sectionName`.
    pub name: String,
    /// The host name it serves, if only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port.
    pub port: u16,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`.
    pub protocol: String,
    /// TLS termination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// TLS of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListenerTls {
    /// `Terminate` or `Passthrough`.
    pub mode: String,
    /// The Secrets with the certificates.
    pub certificate_refs: Vec<SecretRef>,
}

/// A Secret referenced by a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SecretRef {
    /// `Secret`.
    pub kind: String,
    /// The Secret's name.
    pub name: String,
}

/// Which routes may attach to a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AllowedRoutes {
    /// From which namespaces.
    pub namespaces: RouteNamespaces,
}

/// The namespaces routes may come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RouteNamespaces {
    /// `Same`, `All` or `Selector`.
    pub from: String,
}

/// A Gateway API Gateway `name` of class `class` serving `hostname` on HTTPS 443
/// with the certificate of Secret `tls_secret`, and HTTP 80, accepting routes
/// from every namespace.
pub fn https_gateway(namespace: &ModelNamespace, name: &str, class: &str, hostname: &str, tls_secret: &str) -> Gateway {
    let all = || Some(AllowedRoutes { namespaces: RouteNamespaces { from: "All".to_owned() } });
    Gateway::new(
        namespace,
        name,
        GatewaySpec {
            gateway_class_name: class.to_owned(),
            listeners: vec![
                Listener {
                    name: "http".into(),
                    hostname: Some(hostname.to_owned()),
                    port: 80,
                    protocol: "HTTP".into(),
                    tls: None,
                    allowed_routes: all(),
                },
                Listener {
                    name: "https".into(),
                    hostname: Some(hostname.to_owned()),
                    port: 443,
                    protocol: "HTTPS".into(),
                    tls: Some(ListenerTls {
                        mode: "Terminate".into(),
                        certificate_refs: vec![SecretRef { kind: "Secret".into(), name: tls_secret.to_owned() }],
                    }),
                    allowed_routes: all(),
                },
            ],
        },
    )
}

/// Settings of the ingress-nginx controller (its `nginx-configuration` ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NginxSettings {
    /// Requests served over one client keep-alive connection.
    pub keep_alive_requests: u32,
    /// Idle keep-alive connections to each upstream kept open.
    pub upstream_keepalive_connections: u32,
    /// Seconds to read a response from the upstream.
    pub proxy_read_timeout: u32,
    /// Seconds to send a request to the upstream.
    pub proxy_send_timeout: u32,
    /// Seconds to connect to the upstream.
    pub proxy_connect_timeout: u32,
    /// TLS versions offered.
    pub ssl_protocols: String,
    /// TLS 1.2 cipher suites offered (TLS 1.3 suites are fixed by OpenSSL).
    pub ssl_ciphers: String,
}

impl Default for NginxSettings {
    /// The seeds' settings: long keep-alive, 60 s proxy timeouts, TLS 1.2 and 1.3
    /// with forward-secret AEAD suites only.
    fn default() -> Self {
        Self {
            keep_alive_requests: 10_000,
            upstream_keepalive_connections: 320,
            proxy_read_timeout: 60,
            proxy_send_timeout: 60,
            proxy_connect_timeout: 5,
            ssl_protocols: "TLSv1.2 TLSv1.3".to_owned(),
            ssl_ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
                          ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
                .to_owned(),
        }
    }
}

/// The ingress-nginx controller's ConfigMap (named `nginx-configuration`, as its
/// `--configmap` flag is set in the seeds' manifests) in `namespace`.
pub fn nginx_configuration(namespace: &ModelNamespace, settings: &NginxSettings) -> ConfigMap {
    let data = BTreeMap::from([
        ("keep-alive-requests".to_owned(), settings.keep_alive_requests.to_string()),
        ("upstream-keepalive-connections".to_owned(), settings.upstream_keepalive_connections.to_string()),
        ("proxy-read-timeout".to_owned(), settings.proxy_read_timeout.to_string()),
        ("proxy-send-timeout".to_owned(), settings.proxy_send_timeout.to_string()),
        ("proxy-connect-timeout".to_owned(), settings.proxy_connect_timeout.to_string()),
        ("ssl-protocols".to_owned(), settings.ssl_protocols.clone()),
        ("ssl-ciphers".to_owned(), settings.ssl_ciphers.clone()),
        ("use-forwarded-headers".to_owned(), "true".to_owned()),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("nginx-configuration".to_owned()),
            namespace: Some(namespace.as_str().to_owned()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/name".to_owned(), "ingress-nginx".to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}
