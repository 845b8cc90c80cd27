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

/// Read-modify-write of one object as untyped JSON, so that every field the
/// router does not model is written back as it was read: `change` edits the
/// object's body (everything but `apiVersion`, `kind` and `metadata`), and the
/// write is a replace guarded by the `resourceVersion` read. A 409 (someone wrote
/// in between) reads again and retries, up to [`CONFLICT_RETRIES`] times; an
/// object `change` leaves as it was is not written at all.
pub(crate) async fn update_untyped<F>(
    api: &kube::Api<kube::api::DynamicObject>,
    app: &AppId,
    what: &str,
    name: &str,
    mut change: F,
) -> Result<(), RouterError>
where
    F: FnMut(&mut serde_json::Value) -> Result<(), RouterError>,
{
    let mut attempt = 0;
    loop {
        let mut object = api.get(name).await.map_err(|e| router_error(app, what, "read", e))?;
        let before = object.data.clone();
        change(&mut object.data)?;
        if object.data == before {
            return Ok(());
        }
        match api.replace(name, &kube::api::PostParams::default(), &object).await {
            Ok(_) => return Ok(()),
            Err(e) if crate::error::is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) => return Err(router_error(app, what, "update", e)),
        }
    }
}

/// A routing object whose shape the router cannot work with (a weight that is not
/// a number, a route list that is not a list).
pub(crate) fn malformed(what: &str, problem: impl Into<String>) -> RouterError {
    RouterError::backend(format!("read {what}"), deploy_core::error::ErrorKind::InvalidInput, problem.into())
}

/// The array at `key` of `object`, created empty when missing; an error naming
/// `what` when it is something else.
pub(crate) fn array_at<'a>(
    object: &'a mut serde_json::Value,
    key: &str,
    what: &str,
) -> Result<&'a mut Vec<serde_json::Value>, RouterError> {
    let map = object.as_object_mut().ok_or_else(|| malformed(what, format!("{key} is not inside an object")))?;
    map.entry(key.to_owned())
        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| malformed(what, format!("{key} is not a list")))
}

/// `matches` restricted to each of `methods`: every match (an empty one when there
/// are none) once per method, with `method(m)` as its method condition; a match
/// whose own method condition `keeps` does not accept is dropped, so nothing is
/// ever widened to a method not listed.
pub(crate) fn with_methods(
    matches: &[serde_json::Value],
    methods: &[String],
    method: impl Fn(&str) -> serde_json::Value,
    keeps: impl Fn(&serde_json::Value, &str) -> bool,
) -> Vec<serde_json::Value> {
    let any = [serde_json::json!({})];
    let base = if matches.is_empty() { &any[..] } else { matches };
    let mut out = Vec::new();
    for m in base.iter().filter(|m| m.is_object()) {
        for name in methods {
            let own = &m["method"];
            if own.is_null() {
                let mut restricted = m.clone();
                restricted["method"] = method(name);
                out.push(restricted);
            } else if keeps(own, name) {
                out.push(m.clone());
            }
        }
    }
    out.dedup();
    out
}

// The name of a header route a router adds: made with the manifests (an Istio
// VirtualService's header route is built there), so that this module imports the
// manifests and never the other way round.
pub(crate) use crate::manifest::owned_route_name;

/// How many times routers retry a write that lost a race.
pub(crate) const CONFLICT_RETRIES: u32 = 5;

#[cfg(test)]
mod tests;
