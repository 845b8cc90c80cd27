//! Rendering a set of objects as multi-document YAML or a JSON `List`, ready for
//! `kubectl apply -f`.
//!
//! YAML is written with `serde_norway`, the maintained fork of the deprecated
//! `serde_yaml` (same data model and output, kept up to date); `serde_yml` is not
//! used because it is archived with an open soundness advisory (RUSTSEC-2025-0068).

use serde::Serialize;

use crate::error::{KubeError, Result};

/// An ordered set of objects to render; order is kept (put Namespaces and CRDs
/// first, as `kubectl apply` creates in file order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestSet {
    documents: Vec<serde_json::Value>,
}

impl ManifestSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `object` (any k8s-openapi type or custom kind of this crate). Empty
    /// fields (`null`) are dropped, as `kubectl` would.
    pub fn push<T: Serialize>(&mut self, object: &T) -> Result<&mut Self> {
        let mut value =
            serde_json::to_value(object).map_err(|source| KubeError::Encode { what: "manifest".to_owned(), source })?;
        drop_nulls(&mut value);
        self.documents.push(value);
        Ok(self)
    }

    /// The objects, in order.
    pub fn documents(&self) -> &[serde_json::Value] {
        &self.documents
    }

    /// Multi-document YAML: each object after a `---` line.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for doc in &self.documents {
            out.push_str("---\n");
            let yaml = serde_norway::to_string(doc).map_err(|e| KubeError::Encode {
                what: "manifest as yaml".to_owned(),
                source: serde::ser::Error::custom(e),
            })?;
            out.push_str(&yaml);
        }
        Ok(out)
    }

    /// A `v1` `List` of the objects, pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": self.documents});
        serde_json::to_string_pretty(&list)
            .map_err(|source| KubeError::Encode { what: "manifest list".to_owned(), source })
    }
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::manifest::*;
    use deploy_core::model::{Environment, EnvironmentProfile, Percent, Track, TrafficSplit};
    use deploy_core::traffic::{HeaderMatch, HeaderRoute};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
    use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use std::collections::BTreeMap;

    fn every_kind() -> ManifestSet {
        let spec = EnvironmentProfile::preset(Environment::Production).apply_to(fixtures::spec());
        let app = spec.id();
        let mut set = ManifestSet::new();
        set.push(&namespace("shop", BTreeMap::from([("environment".into(), "production".into())]))).unwrap();
        set.push(&crd::tests::rollout_crd()).unwrap();
        set.push(&config_map(&"shop".parse().unwrap(), "web", BTreeMap::from([("LOG_LEVEL".into(), "info".into())])))
            .unwrap();
        set.push(&secret(&"shop".parse().unwrap(), "db", BTreeMap::from([("password".into(), b"s3cr\xff".to_vec())])))
            .unwrap();
        set.push(&deployment(&spec, &DeploymentOptions::default().release(fixtures::release("1.4.2")))).unwrap();
        set.push(&service(&spec, &ServiceOptions::default())).unwrap();
        set.push(&horizontal_pod_autoscaler(&spec, &HpaOptions::default()).unwrap()).unwrap();
        set.push(&pod_disruption_budget(&spec, &DisruptionBudget::default())).unwrap();
        set.push(&ingress(
            &"shop".parse().unwrap(),
            "web",
            &IngressOptions::default()
                .host("shop.example.com", vec![IngressPath::prefix("/", "web", 80)])
                .tls(vec!["shop.example.com".into()], "tls"),
        ))
        .unwrap();
        set.push(&network_policy(
            &"shop".parse().unwrap(),
            "deny",
            &NetworkPolicyOptions::default().ingress_namespace("ingress-nginx"),
        ))
        .unwrap();
        set.push(&virtual_service(
            &app,
            &VirtualServiceOptions::default()
                .split(TrafficSplit::canary(Percent::new(25).unwrap()))
                .header_route(HeaderRoute::new("x-canary", HeaderMatch::Regex("^(yes|1)$".into()), Track::Canary)),
        ))
        .unwrap();
        set.push(&destination_rule(&app, &[Track::Stable, Track::Canary], None)).unwrap();
        set.push(&peer_authentication(&"shop".parse().unwrap(), "default", "STRICT")).unwrap();
        set.push(&authorization_policy(&app, vec!["p".into()], vec!["GET".into()], vec!["/".into()])).unwrap();
        set
    }

    fn back<T: serde::de::DeserializeOwned>(doc: &str) -> T {
        serde_norway::from_str(doc).unwrap()
    }

    #[test]
    fn every_rendered_yaml_document_parses_back_without_loss() {
        let spec = EnvironmentProfile::preset(Environment::Production).apply_to(fixtures::spec());
        let app = spec.id();
        let yaml = every_kind().to_yaml().unwrap();
        let docs: Vec<&str> = yaml.split("---\n").filter(|d| !d.is_empty()).collect();
        assert_eq!(docs.len(), 14);
        assert_eq!(
            back::<Namespace>(docs[0]),
            namespace("shop", BTreeMap::from([("environment".into(), "production".into())]))
        );
        assert_eq!(back::<CustomResourceDefinition>(docs[1]), crd::tests::rollout_crd());
        assert_eq!(
            back::<ConfigMap>(docs[2]),
            config_map(&"shop".parse().unwrap(), "web", BTreeMap::from([("LOG_LEVEL".into(), "info".into())]))
        );
        let s: Secret = back(docs[3]);
        assert_eq!(s.data.unwrap()["password"].0, b"s3cr\xff".to_vec(), "binary survives base64");
        assert_eq!(
            back::<Deployment>(docs[4]),
            deployment(&spec, &DeploymentOptions::default().release(fixtures::release("1.4.2")))
        );
        assert_eq!(back::<Service>(docs[5]), service(&spec, &ServiceOptions::default()));
        assert_eq!(
            back::<HorizontalPodAutoscaler>(docs[6]),
            horizontal_pod_autoscaler(&spec, &HpaOptions::default()).unwrap()
        );
        assert_eq!(back::<PodDisruptionBudget>(docs[7]), pod_disruption_budget(&spec, &DisruptionBudget::default()));
        let ing: Ingress = back(docs[8]);
        assert_eq!(ing.spec.unwrap().tls.unwrap()[0].secret_name.as_deref(), Some("tls"));
        assert_eq!(
            back::<NetworkPolicy>(docs[9]),
            network_policy(
                &"shop".parse().unwrap(),
                "deny",
                &NetworkPolicyOptions::default().ingress_namespace("ingress-nginx")
            )
        );
        let vs: VirtualService = back(docs[10]);
        assert_eq!(vs.spec.http[0].matches[0].headers["x-canary"], StringMatch::regex("^(yes|1)$"));
        assert_eq!(back::<DestinationRule>(docs[11]), destination_rule(&app, &[Track::Stable, Track::Canary], None));
        assert_eq!(
            back::<PeerAuthentication>(docs[12]),
            peer_authentication(&"shop".parse().unwrap(), "default", "STRICT")
        );
        let ap: AuthorizationPolicy = back(docs[13]);
        assert_eq!(ap.spec.rules[0].to[0].operation.methods, vec!["GET".to_owned()]);
        assert!(docs[4].contains("kind: Deployment") && docs[4].contains("apiVersion: apps/v1"));
    }

    #[test]
    fn json_list_holds_the_same_objects() {
        let set = every_kind();
        let list: serde_json::Value = serde_json::from_str(&set.to_json().unwrap()).unwrap();
        assert_eq!(list["kind"], "List");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 14);
        let d: Deployment = serde_json::from_value(items[4].clone()).unwrap();
        let spec = EnvironmentProfile::preset(Environment::Production).apply_to(fixtures::spec());
        assert_eq!(d, deployment(&spec, &DeploymentOptions::default().release(fixtures::release("1.4.2"))));
        assert!(!set.to_json().unwrap().contains("null"));
    }
}
