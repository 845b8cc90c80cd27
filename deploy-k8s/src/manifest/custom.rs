//! Typed custom resources that k8s-openapi does not carry (Istio, Gateway API),
//! usable with `kube::Api` like any built-in kind.

/// Declares a namespaced custom kind `$kind` (or, with `as "Kind"`, a Rust type
/// named apart from its kind) with `spec: $spec`, serialising
/// `apiVersion` and `kind` as the API server expects, and implements
/// `kube::Resource` for it.
macro_rules! custom_kind {
    ($(#[$doc:meta])* $kind:ident, $spec:ty, $group:literal, $version:literal, $plural:literal) => {
        $crate::manifest::custom::custom_kind!($(#[$doc])* $kind as stringify!($kind), $spec, $group, $version, $plural);
    };
    ($(#[$doc:meta])* $kind:ident as $kind_name:expr, $spec:ty, $group:literal, $version:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $kind {
            /// Always `group/version` of this kind.
            pub api_version: String,
            /// Always the kind's name.
            pub kind: String,
            /// Name, namespace, labels.
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            /// The desired state.
            pub spec: $spec,
        }

        impl $kind {
            /// An object named `name` in `namespace`.
            pub fn new(namespace: &deploy_core::model::Namespace, name: &str, spec: $spec) -> Self {
                Self {
                    api_version: concat!($group, "/", $version).to_owned(),
                    kind: $kind_name.to_owned(),
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_owned()),
                        namespace: Some(namespace.as_str().to_owned()),
                        ..Default::default()
                    },
                    spec,
                }
            }
        }

        impl kube::Resource for $kind {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind_name.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                $version.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use custom_kind;
