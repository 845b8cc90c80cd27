//! CustomResourceDefinitions from a short description.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::{KubeError, Result};

/// Whether objects of the kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrdScope {
    /// In a namespace.
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

/// One version of a custom resource with its OpenAPI v3 schema.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CrdVersion {
    /// The version, such as `v1`.
    pub name: String,
    /// Whether the API serves it.
    pub served: bool,
    /// Whether objects are stored in it; exactly one version stores.
    pub storage: bool,
    /// The OpenAPI v3 schema of the object, as JSON.
    pub schema: serde_json::Value,
}

impl CrdVersion {
    /// A served, stored version.
    pub fn new(name: impl Into<String>, schema: serde_json::Value) -> Self {
        Self { name: name.into(), served: true, storage: true, schema }
    }
}

/// A custom resource kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CrdDescription {
    /// The API group, such as `deploy-rs.io`.
    pub group: String,
    /// The kind, such as `Rollout`.
    pub kind: String,
    /// The plural, lower case, such as `rollouts`.
    pub plural: String,
    /// Namespaced or cluster-wide.
    pub scope: CrdScope,
    /// The versions.
    pub versions: Vec<CrdVersion>,
}

impl CrdDescription {
    /// A namespaced kind whose plural is the lower-case kind plus `s`.
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        let kind = kind.into();
        Self {
            group: group.into(),
            plural: format!("{}s", kind.to_ascii_lowercase()),
            kind,
            scope: CrdScope::Namespaced,
            versions: Vec::new(),
        }
    }

    /// Sets the scope.
    #[must_use]
    pub fn scope(mut self, scope: CrdScope) -> Self {
        self.scope = scope;
        self
    }

    /// Adds a version.
    #[must_use]
    pub fn version(mut self, version: CrdVersion) -> Self {
        self.versions.push(version);
        self
    }
}

/// Builds the CRD `{plural}.{group}`. Fails when a schema is not a valid
/// `JSONSchemaProps`.
pub fn custom_resource_definition(description: &CrdDescription) -> Result<CustomResourceDefinition> {
    let name = format!("{}.{}", description.plural, description.group);
    let versions = description
        .versions
        .iter()
        .map(|v| {
            let schema: JSONSchemaProps = serde_json::from_value(v.schema.clone())
                .map_err(|source| KubeError::Encode { what: format!("schema of {name} {}", v.name), source })?;
            Ok(CustomResourceDefinitionVersion {
                name: v.name.clone(),
                served: v.served,
                storage: v.storage,
                schema: Some(CustomResourceValidation { open_api_v3_schema: Some(schema) }),
                ..CustomResourceDefinitionVersion::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta { name: Some(name), ..ObjectMeta::default() },
        spec: CustomResourceDefinitionSpec {
            group: description.group.clone(),
            names: CustomResourceDefinitionNames {
                kind: description.kind.clone(),
                plural: description.plural.clone(),
                singular: Some(description.kind.to_ascii_lowercase()),
                list_kind: Some(format!("{}List", description.kind)),
                ..CustomResourceDefinitionNames::default()
            },
            scope: match description.scope {
                CrdScope::Namespaced => "Namespaced".to_owned(),
                CrdScope::Cluster => "Cluster".to_owned(),
            },
            versions,
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn rollout_crd() -> CustomResourceDefinition {
        let schema = json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 0}
            }, "required": ["image"]}}
        });
        custom_resource_definition(
            &CrdDescription::new("deploy-rs.io", "Rollout").version(CrdVersion::new("v1", schema)),
        )
        .unwrap()
    }

    #[test]
    fn crd_has_names_scope_versions_and_schema() {
        let crd = rollout_crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("rollouts.deploy-rs.io"));
        assert_eq!(crd.spec.group, "deploy-rs.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "Rollout");
        assert_eq!(crd.spec.names.plural, "rollouts");
        assert_eq!(crd.spec.names.list_kind.as_deref(), Some("RolloutList"));
        let v = &crd.spec.versions[0];
        assert!(v.served && v.storage);
        let schema = v.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        let spec = &schema.properties.as_ref().unwrap()["spec"];
        assert_eq!(spec.required.as_deref(), Some(&["image".to_owned()][..]));
        assert_eq!(spec.properties.as_ref().unwrap()["replicas"].minimum, Some(0.0));
    }

    #[test]
    fn a_schema_that_is_not_a_schema_is_an_error() {
        let bad = CrdDescription::new("deploy-rs.io", "Rollout").version(CrdVersion::new("v1", json!({"type": 5})));
        assert!(matches!(custom_resource_definition(&bad), Err(KubeError::Encode { .. })));
    }
}
