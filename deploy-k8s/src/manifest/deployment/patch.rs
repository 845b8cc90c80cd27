//! The pod-spec patch of [`DeploymentOptions::pod_spec_patch`](super::DeploymentOptions::pod_spec_patch),
//! merged over the built pod spec as a JSON merge patch (RFC 7386).

use k8s_openapi::api::core::v1::PodSpec;

/// `built` with `patch` merged over it (RFC 7386). Both are pod specs, so the merge
/// of their JSON forms is one too; were it ever not, the built spec is kept whole
/// rather than half-patched.
pub(super) fn merged(built: PodSpec, patch: &PodSpec) -> PodSpec {
    let (Ok(mut target), Ok(mut patch)) = (serde_json::to_value(&built), serde_json::to_value(patch)) else {
        return built;
    };
    // A typed `PodSpec` always carries its required lists (`containers: []`):
    // an empty list in the patch means "not set", not "clear".
    drop_empty_lists(&mut patch);
    merge_patch(&mut target, &patch);
    serde_json::from_value(target).unwrap_or(built)
}

fn drop_empty_lists(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(fields) = value {
        fields.retain(|_, v| !v.as_array().is_some_and(Vec::is_empty));
        fields.values_mut().for_each(drop_empty_lists);
    }
}

/// JSON merge patch (RFC 7386).
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(out) = target {
        for (key, value) in fields {
            if value.is_null() {
                out.remove(key);
            } else {
                merge_patch(out.entry(key.clone()).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}
