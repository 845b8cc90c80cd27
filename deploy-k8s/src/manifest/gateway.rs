//! Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`), typed from the Gateway
//! API reference for the fields deploy-rs sets and reads.

use serde::{Deserialize, Serialize};

use crate::manifest::custom::custom_kind;

custom_kind!(
    /// `gateway.networking.k8s.io/v1` HTTPRoute: HTTP routing attached to a Gateway.
    HTTPRoute, HttpRouteSpec, "gateway.networking.k8s.io", "v1", "httproutes"
);

/// HTTPRoute `spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRouteSpec {
    /// The Gateways the route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules; the most specific match wins.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// A Gateway reference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ParentReference {
    /// The Gateway's name.
    pub name: String,
    /// Its namespace, when not the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A listener of the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// One rule: matches and weighted backends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRouteRule {
    /// The rule's name (Gateway API 1.2+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions; none matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// Weighted Services.
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
}

/// A match condition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpRouteMatch {
    /// A path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// Header conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeaderMatch>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` or `RegularExpression`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The path.
    pub value: String,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpHeaderMatch {
    /// `Exact` or `RegularExpression`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The header name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// A Service and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpBackendRef {
    /// The Service's name.
    pub name: String,
    /// The Service's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Relative weight; the API defaults a missing weight to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_route_serialises_as_the_gateway_api_expects() {
        let route = HTTPRoute::new(
            &"shop".parse().unwrap(),
            "web",
            HttpRouteSpec {
                parent_refs: vec![ParentReference {
                    name: "public".into(),
                    namespace: Some("gateways".into()),
                    section_name: None,
                }],
                hostnames: vec!["shop.example.com".into()],
                rules: vec![HttpRouteRule {
                    name: None,
                    matches: vec![HttpRouteMatch {
                        path: None,
                        headers: vec![HttpHeaderMatch {
                            type_: Some("Exact".into()),
                            name: "x-canary".into(),
                            value: "always".into(),
                        }],
                    }],
                    backend_refs: vec![HttpBackendRef { name: "web-canary".into(), port: Some(80), weight: Some(100) }],
                }],
            },
        );
        let json = serde_json::to_value(&route).unwrap();
        assert_eq!(json["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(json["spec"]["parentRefs"][0]["namespace"], "gateways");
        assert_eq!(json["spec"]["rules"][0]["matches"][0]["headers"][0]["type"], "Exact");
        assert_eq!(json["spec"]["rules"][0]["backendRefs"][0]["weight"], 100);
    }
}
