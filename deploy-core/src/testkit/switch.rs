//! [`TestTrafficSwitch`]: the site that receives the traffic, in memory, for
//! failover plans run on the test kit.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::dr::TrafficSwitch;
use crate::error::BoxError;

/// A [`TrafficSwitch`] that remembers which site it points at, as a DNS record or a
/// global load balancer would, so that a test can assert where a failover left the
/// traffic.
#[derive(Debug, Default)]
pub struct TestTrafficSwitch {
    site: Mutex<Option<String>>,
}

impl TestTrafficSwitch {
    /// A switch pointed at `site`.
    pub fn pointing_at(site: impl Into<String>) -> Self {
        Self { site: Mutex::new(Some(site.into())) }
    }

    /// The site the traffic goes to (`None` before any switch).
    pub fn site(&self) -> Option<String> {
        self.site.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl TrafficSwitch for TestTrafficSwitch {
    async fn switch_to(&self, site: &str) -> Result<(), BoxError> {
        *self.site.lock().unwrap_or_else(PoisonError::into_inner) = Some(site.to_owned());
        Ok(())
    }

    async fn current(&self) -> Result<Option<String>, BoxError> {
        Ok(self.site())
    }
}
