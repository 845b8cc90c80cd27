//! NetworkPolicy: deny traffic from other namespaces, allow the ingress
//! controller's namespace, and allow egress only where it is named.

use deploy_core::model::Namespace as ModelNamespace;
use std::collections::BTreeMap;

use deploy_core::model::Namespace;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label every namespace carries with its own name (Kubernetes 1.22+).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Egress allowed to one namespace, on some ports (all ports when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EgressTo {
    /// The namespace's name.
    pub namespace: String,
    /// TCP ports; empty means every port.
    pub ports: Vec<u16>,
}

impl EgressTo {
    /// Egress to `namespace` on `ports`.
    pub fn new(namespace: Namespace, ports: Vec<u16>) -> Self {
        Self { namespace: namespace.into_string(), ports }
    }
}

/// What the policy allows; everything else is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkPolicyOptions {
    /// The pods the policy applies to; empty selects every pod of the namespace.
    pub pod_selector: BTreeMap<String, String>,
    /// The ingress controller's namespace, allowed in.
    pub ingress_namespace: Option<String>,
    /// Egress allowed, per namespace. When empty, egress is not restricted.
    pub egress: Vec<EgressTo>,
    /// With egress restricted, still allow DNS (UDP and TCP 53) to `kube-system`.
    pub allow_dns: bool,
}

impl Default for NetworkPolicyOptions {
    fn default() -> Self {
        Self { pod_selector: BTreeMap::new(), ingress_namespace: None, egress: Vec::new(), allow_dns: true }
    }
}

impl NetworkPolicyOptions {
    /// Allows the ingress controller's namespace in.
    #[must_use]
    pub fn ingress_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.ingress_namespace = Some(namespace.into());
        self
    }

    /// Allows egress to `to`.
    #[must_use]
    pub fn egress(mut self, to: EgressTo) -> Self {
        self.egress.push(to);
        self
    }

    /// Applies only to pods with these labels.
    #[must_use]
    pub fn pod_selector(mut self, labels: BTreeMap<String, String>) -> Self {
        self.pod_selector = labels;
        self
    }
}

fn namespace_peer(namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn port(protocol: &str, number: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(i32::from(number))),
        end_port: None,
    }
}

/// Builds the policy `name` in `namespace`: ingress only from the same namespace
/// and the ingress controller's; egress, when any is listed, only there (plus DNS).
pub fn network_policy(namespace: &ModelNamespace, name: &str, options: &NetworkPolicyOptions) -> NetworkPolicy {
    let mut from =
        vec![NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..NetworkPolicyPeer::default() }];
    if let Some(ns) = &options.ingress_namespace {
        from.push(namespace_peer(ns));
    }
    let mut policy_types = vec!["Ingress".to_owned()];
    let egress = if options.egress.is_empty() {
        None
    } else {
        policy_types.push("Egress".to_owned());
        let mut rules: Vec<NetworkPolicyEgressRule> = options
            .egress
            .iter()
            .map(|e| NetworkPolicyEgressRule {
                to: Some(vec![namespace_peer(&e.namespace)]),
                ports: (!e.ports.is_empty()).then(|| e.ports.iter().map(|p| port("TCP", *p)).collect()),
            })
            .collect();
        if options.allow_dns {
            rules.push(NetworkPolicyEgressRule {
                to: Some(vec![namespace_peer("kube-system")]),
                ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
            });
        }
        Some(rules)
    };
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.as_str().to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: (!options.pod_selector.is_empty()).then(|| options.pod_selector.clone()),
                ..LabelSelector::default()
            }),
            policy_types: Some(policy_types),
            ingress: Some(vec![NetworkPolicyIngressRule { from: Some(from), ports: None }]),
            egress,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_other_namespaces_but_the_ingress_controller() {
        let np = network_policy(
            &"shop".parse().unwrap(),
            "deny-cross-namespace",
            &NetworkPolicyOptions::default()
                .ingress_namespace("ingress-nginx")
                .egress(EgressTo::new(Namespace::new("databases").unwrap(), vec![5432])),
        );
        let spec = np.spec.unwrap();
        assert_eq!(spec.pod_selector, Some(LabelSelector::default()), "every pod of the namespace");
        assert_eq!(spec.policy_types.unwrap(), vec!["Ingress".to_owned(), "Egress".to_owned()]);
        let from = spec.ingress.unwrap()[0].from.clone().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
        assert!(from[0].namespace_selector.is_none(), "same namespace only");
        let ns = from[1].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(ns[NAMESPACE_NAME_LABEL], "ingress-nginx");
        let egress = spec.egress.unwrap();
        assert_eq!(egress.len(), 2);
        let db = &egress[0];
        assert_eq!(
            db.to.as_ref().unwrap()[0].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()
                [NAMESPACE_NAME_LABEL],
            "databases"
        );
        assert_eq!(db.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(5432)));
        let dns = egress[1].ports.as_ref().unwrap();
        assert_eq!(dns.iter().map(|p| p.protocol.as_deref().unwrap()).collect::<Vec<_>>(), ["UDP", "TCP"]);
    }

    #[test]
    fn no_egress_rules_leaves_egress_open() {
        let np = network_policy(&"shop".parse().unwrap(), "p", &NetworkPolicyOptions::default());
        let spec = np.spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), vec!["Ingress".to_owned()]);
        assert!(spec.egress.is_none());
    }
}
