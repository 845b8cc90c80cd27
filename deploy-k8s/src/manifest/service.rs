//! The Service in front of an application.

use std::collections::BTreeMap;

use deploy_core::model::{AppSpec, Track};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::manifest::deployment::non_empty;

/// Settings of a Service that [`AppSpec`] does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// The object's name; `None` names it after the app.
    pub name: Option<String>,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    pub type_: String,
    /// Select only this track's pods (a blue-green Service); `None` selects every
    /// pod of the app.
    pub track: Option<Track>,
    /// The port the Service exposes for each container port; a port not listed is
    /// exposed on its container port number.
    pub service_ports: BTreeMap<String, u16>,
    /// Extra annotations (cloud load balancer settings).
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            name: None,
            type_: "ClusterIP".to_owned(),
            track: None,
            service_ports: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

impl ServiceOptions {
    /// Names the Service.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the Service type.
    #[must_use]
    pub fn type_(mut self, type_: impl Into<String>) -> Self {
        self.type_ = type_.into();
        self
    }

    /// Selects one track only.
    #[must_use]
    pub fn track(mut self, track: Track) -> Self {
        self.track = Some(track);
        self
    }

    /// Exposes container port `name` on `port`.
    #[must_use]
    pub fn service_port(mut self, name: impl Into<String>, port: u16) -> Self {
        self.service_ports.insert(name.into(), port);
        self
    }
}

/// Builds the Service of `spec`: one port per container port, targeted by name.
pub fn service(spec: &AppSpec, options: &ServiceOptions) -> Service {
    let app = spec.id();
    let selector = match options.track {
        Some(track) => labels::track_selector(&app, track),
        None => labels::app_selector(&app),
    };
    let ports = spec
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.to_string()),
            port: i32::from(options.service_ports.get(p.name.as_str()).copied().unwrap_or(p.container_port)),
            target_port: Some(IntOrString::String(p.name.to_string())),
            protocol: Some(format!("{:?}", p.protocol).to_ascii_uppercase()),
            ..ServicePort::default()
        })
        .collect();
    let mut meta_labels = labels::app_selector(&app);
    meta_labels.insert(labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned());
    Service {
        metadata: ObjectMeta {
            name: Some(options.name.clone().unwrap_or_else(|| app.name.to_string())),
            namespace: Some(app.namespace.to_string()),
            labels: Some(meta_labels),
            annotations: non_empty(options.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(options.type_.clone()),
            selector: Some(selector),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn service_targets_named_ports_of_the_selected_track() {
        let s = service(&fixtures::spec(), &ServiceOptions::default().track(Track::Blue).service_port("http", 80));
        assert_eq!(s.metadata.name.as_deref(), Some("web"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let selector = spec.selector.unwrap();
        assert_eq!(selector[labels::TRACK], "blue");
        assert_eq!(selector[labels::APP], "web");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 80);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }
}
