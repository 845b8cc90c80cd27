//! A [`TrafficSwitch`] for failovers between namespaces or regions of one
//! cluster's DNS: an `ExternalName` Service that clients address, pointed at the
//! app's Service in the site that serves.
//!
//! Clients resolve `<service>.<front namespace>.svc`, a CNAME to
//! `<app>.<site namespace>.svc.cluster.local`; switching rewrites only
//! `spec.externalName` (server-side apply with the cluster's field manager), and the
//! site is read back from the object the server stores. A Service of that name that
//! deploy-rs does not manage is refused (`KubeError::NotOwned`), never taken over.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deploy_core::dr::TrafficSwitch;
use deploy_core::error::BoxError;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;

use crate::cluster::{Cluster, get_opt};
use crate::error::KubeError;
use crate::labels;

/// Points an `ExternalName` Service at the serving site's Service.
#[derive(Clone)]
pub struct ExternalNameSwitch {
    cluster: Cluster,
    namespace: String,
    service: String,
    app: String,
    sites: BTreeMap<String, String>,
    domain: String,
}

impl ExternalNameSwitch {
    /// The Service `service` in `namespace`, pointing at the Service `app` of the
    /// namespace each site maps to (`site name → namespace`).
    pub fn new(
        cluster: Cluster,
        namespace: impl Into<String>,
        service: impl Into<String>,
        app: impl Into<String>,
        sites: BTreeMap<String, String>,
    ) -> Self {
        Self {
            cluster,
            namespace: namespace.into(),
            service: service.into(),
            app: app.into(),
            sites,
            domain: "cluster.local".to_owned(),
        }
    }

    /// The cluster's DNS domain (default `cluster.local`).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into();
        self
    }

    fn target(&self, namespace: &str) -> String {
        format!("{}.{namespace}.svc.{}", self.app, self.domain)
    }
}

#[async_trait]
impl TrafficSwitch for ExternalNameSwitch {
    async fn switch_to(&self, site: &str) -> Result<(), BoxError> {
        let Some(namespace) = self.sites.get(site) else {
            return Err(Box::new(KubeError::Invalid {
                what: "failover site".to_owned(),
                reason: format!("{site:?} is not one of {:?}", self.sites.keys().collect::<Vec<_>>()),
            }));
        };
        // Invariant 5: a Service of this name that deploy-rs does not manage is left alone.
        let api: Api<Service> = Api::namespaced(self.cluster.client().clone(), &self.namespace);
        let what = format!("service {}/{}", self.namespace, self.service);
        if let Some(live) = get_opt(&api, &self.service, &format!("read {what}")).await? {
            let owned = live.metadata.labels.as_ref().and_then(|l| l.get(labels::MANAGED_BY)).map(String::as_str)
                == Some(labels::MANAGER);
            if !owned {
                return Err(Box::new(KubeError::NotOwned { what }));
            }
        }
        let object = Service {
            metadata: ObjectMeta {
                name: Some(self.service.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (labels::APP.to_owned(), self.app.clone()),
                    (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".to_owned()),
                external_name: Some(self.target(namespace)),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        self.cluster.apply(&object).await?;
        Ok(())
    }

    async fn current(&self) -> Result<Option<String>, BoxError> {
        let api: Api<Service> = Api::namespaced(self.cluster.client().clone(), &self.namespace);
        let operation = format!("read service {}/{}", self.namespace, self.service);
        let Some(service) = get_opt(&api, &self.service, &operation).await? else { return Ok(None) };
        let target = service.spec.and_then(|s| s.external_name);
        Ok(target.and_then(|t| self.sites.iter().find(|(_, ns)| self.target(ns) == t).map(|(site, _)| site.clone())))
    }
}
