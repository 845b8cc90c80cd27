//! Ingress with TLS, path rules and annotations.

use deploy_core::model::Namespace as ModelNamespace;
use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::manifest::deployment::non_empty;

/// One path of a host, sent to a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngressPath {
    /// The path, such as `/api`.
    pub path: String,
    /// `Prefix`, `Exact` or `ImplementationSpecific`.
    pub path_type: String,
    /// The Service that receives it.
    pub service: String,
    /// The Service's port number.
    pub port: u16,
}

impl IngressPath {
    /// A `Prefix` path to `service:port`.
    pub fn prefix(path: impl Into<String>, service: impl Into<String>, port: u16) -> Self {
        Self { path: path.into(), path_type: "Prefix".to_owned(), service: service.into(), port }
    }
}

/// What an Ingress routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IngressOptions {
    /// The Ingress class (`nginx`).
    pub class_name: Option<String>,
    /// Paths per host, in order.
    pub rules: Vec<(String, Vec<IngressPath>)>,
    /// TLS: the hosts each certificate Secret serves.
    pub tls: Vec<(Vec<String>, String)>,
    /// Controller annotations.
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

impl IngressOptions {
    /// Sets the Ingress class.
    #[must_use]
    pub fn class_name(mut self, class: impl Into<String>) -> Self {
        self.class_name = Some(class.into());
        self
    }

    /// Routes `paths` of `host`.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>, paths: Vec<IngressPath>) -> Self {
        self.rules.push((host.into(), paths));
        self
    }

    /// Serves `hosts` with the certificate in Secret `secret`.
    #[must_use]
    pub fn tls(mut self, hosts: Vec<String>, secret: impl Into<String>) -> Self {
        self.tls.push((hosts, secret.into()));
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

/// Builds an Ingress named `name` in `namespace`.
pub fn ingress(namespace: &ModelNamespace, name: &str, options: &IngressOptions) -> Ingress {
    let rules = options
        .rules
        .iter()
        .map(|(host, paths)| IngressRule {
            host: Some(host.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: paths
                    .iter()
                    .map(|p| HTTPIngressPath {
                        path: Some(p.path.clone()),
                        path_type: p.path_type.clone(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: p.service.clone(),
                                port: Some(ServiceBackendPort { number: Some(i32::from(p.port)), name: None }),
                            }),
                            resource: None,
                        },
                    })
                    .collect(),
            }),
        })
        .collect();
    let tls: Vec<IngressTLS> = options
        .tls
        .iter()
        .map(|(hosts, secret)| IngressTLS { hosts: Some(hosts.clone()), secret_name: Some(secret.clone()) })
        .collect();
    Ingress {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.as_str().to_owned()),
            labels: non_empty(options.labels.clone()),
            annotations: non_empty(options.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: options.class_name.clone(),
            rules: Some(rules),
            tls: (!tls.is_empty()).then_some(tls),
            default_backend: None,
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_carries_tls_paths_and_annotations() {
        let options = IngressOptions::default()
            .class_name("nginx")
            .host(
                "shop.example.com",
                vec![IngressPath::prefix("/api", "web", 80), IngressPath::prefix("/", "frontend", 8080)],
            )
            .tls(vec!["shop.example.com".into()], "shop-tls")
            .annotation("cert-manager.io/cluster-issuer", "letsencrypt");
        let ing = ingress(&"shop".parse().unwrap(), "web", &options);
        assert_eq!(ing.metadata.annotations.as_ref().unwrap()["cert-manager.io/cluster-issuer"], "letsencrypt");
        let spec = ing.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("shop-tls"));
        assert_eq!(tls.hosts.as_deref(), Some(&["shop.example.com".to_owned()][..]));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("shop.example.com"));
        let paths = &rule.http.as_ref().unwrap().paths;
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0].path.as_deref(), Some("/api"));
        assert_eq!(paths[0].path_type, "Prefix");
        let backend = paths[1].backend.service.as_ref().unwrap();
        assert_eq!((backend.name.as_str(), backend.port.as_ref().unwrap().number), ("frontend", Some(8080)));
    }
}
