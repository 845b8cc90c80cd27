//! Traffic routers implementing deploy-core's
//! [`TrafficRouter`](deploy_core::traffic::TrafficRouter), each of which reads the
//! split back from the object it changed:
//!
//! | router | object | can do |
//! |---|---|---|
//! | [`ServiceSelectorRouter`] | the Service's selector | whole switches (blue-green) |
//! | [`ReplicaRatioRouter`] | replica counts behind one Service | weights at replica granularity |
//! | [`IstioRouter`] | a VirtualService | weights, header routes |
//! | [`GatewayRouter`] | a Gateway API HTTPRoute | weights, header routes |
//! | [`NginxCanaryRouter`] | a canary Ingress's annotations | weights, one header route |

mod gateway;
mod istio;
mod nginx;
mod replica_ratio;
mod service_selector;

pub use gateway::GatewayRouter;
pub use istio::IstioRouter;
pub use nginx::NginxCanaryRouter;
pub use replica_ratio::ReplicaRatioRouter;
pub use service_selector::ServiceSelectorRouter;

use deploy_core::model::{AppId, Percent, Track, TrafficSplit};
use deploy_core::traffic::RouterError;

use crate::error::{is_not_found, kind_of};

/// Wraps a kube error of a router call; 404 becomes [`RouterError::NotFound`].
pub(crate) fn router_error(app: &AppId, what: &str, operation: &str, error: kube::Error) -> RouterError {
    if is_not_found(&error) {
        RouterError::NotFound { app: app.clone(), what: what.to_owned() }
    } else {
        RouterError::backend(format!("{operation} {what}"), kind_of(&error), error)
    }
}

/// A split from weights read back from an object; weights that do not add up to
/// 100 are reported as a backend error naming what was read.
pub(crate) fn split_from(weights: Vec<(Track, i64)>, what: &str) -> Result<TrafficSplit, RouterError> {
    let mut parsed = Vec::new();
    for (track, w) in &weights {
        let p =
            u8::try_from(*w).ok().and_then(|w| Percent::new(w).ok()).ok_or_else(|| invalid(what, weights.clone()))?;
        parsed.push((*track, p));
    }
    TrafficSplit::new(parsed).map_err(|_| invalid(what, weights))
}

fn invalid(what: &str, weights: Vec<(Track, i64)>) -> RouterError {
    RouterError::backend(
        format!("read the split of {what}"),
        deploy_core::error::ErrorKind::InvalidInput,
        format!("weights {weights:?} do not form a split of 100"),
    )
}

/// The single track a split sends everything to, if it does.
pub(crate) fn single_track(split: &TrafficSplit) -> Option<Track> {
    let mut tracks = split.iter();
    match (tracks.next(), tracks.next()) {
        (Some((track, _)), None) => Some(track),
        _ => None,
    }
}

/// Read-modify-write of one object with its `resourceVersion` as the guard: a 409
/// (someone wrote in between) reads again and retries, up to `retries` times.
pub(crate) async fn update_object<K, F>(
    api: &kube::Api<K>,
    name: &str,
    retries: u32,
    mut change: F,
) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: FnMut(&mut K),
{
    let mut attempt = 0;
    loop {
        let mut object = api.get(name).await?;
        change(&mut object);
        match api.replace(name, &kube::api::PostParams::default(), &object).await {
            Err(e) if crate::error::is_conflict(&e) && attempt < retries => attempt += 1,
            other => return other,
        }
    }
}

/// How many times routers retry a write that lost a race.
pub(crate) const CONFLICT_RETRIES: u32 = 5;

#[cfg(test)]
mod tests;
