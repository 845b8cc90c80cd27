//! Exporting an app's manifests as a minimal Helm chart, and rendering it the way
//! Helm would for the few template expressions the export writes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::release::HelmError;
use crate::manifest::ManifestSet;

const IMAGE_MARK: &str = "__deploy_rs_helm_image__";
const REPLICAS_MARK: &str = "__deploy_rs_helm_replicas__";
const NAMESPACE_MARK: &str = "__deploy_rs_helm_namespace__";
const IMAGE_EXPR: &str = "{{ .Values.image }}";
const REPLICAS_EXPR: &str = "{{ .Values.replicaCount }}";
const NAMESPACE_EXPR: &str = "{{ .Release.Namespace }}";

/// What `Chart.yaml` says about the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChartMetadata {
    /// The chart's name (a DNS label, as Helm requires).
    pub name: String,
    /// The chart's SemVer version.
    pub version: String,
    /// The version of the app it ships (`appVersion`).
    pub app_version: String,
    /// One line about the chart.
    pub description: String,
}

impl ChartMetadata {
    /// Metadata for chart `name` at `version`, shipping `app_version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>, app_version: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            description: format!("{name}, exported by deploy-rs"),
            name,
            version: version.into(),
            app_version: app_version.into(),
        }
    }
}

/// A chart as files: `Chart.yaml`, `values.yaml` and `templates/*.yaml`, by path
/// relative to the chart's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmChart {
    files: BTreeMap<String, String>,
}

/// The values the exported templates use.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportedValues {
    image: String,
    #[serde(default)]
    replica_count: Option<u32>,
}

impl HelmChart {
    /// The chart's files, by relative path.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Writes the chart under `dir` (created if missing), as `helm package` and
    /// `helm install <dir>` expect.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (path, text) in &self.files {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(file, text)?;
        }
        Ok(())
    }

    /// The objects the templates render to for a release in `namespace`, with
    /// `values.yaml` overridden by `values` (YAML or JSON, as `helm install -f`).
    /// Only the expressions the export writes are rendered (`.Values.image`,
    /// `.Values.replicaCount`, `.Release.Namespace`); this is not a Go-template
    /// engine.
    pub fn render(&self, namespace: &str, values: Option<&str>) -> Result<Vec<serde_json::Value>, HelmError> {
        let invalid = |reason: String| HelmError::Decode { secret: "chart".to_owned(), reason };
        let defaults = self.files.get("values.yaml").map(String::as_str).unwrap_or_default();
        let mut merged: serde_json::Value =
            serde_norway::from_str(defaults).map_err(|e| invalid(format!("values.yaml: {e}")))?;
        if let Some(overrides) = values {
            let overrides: serde_json::Value =
                serde_norway::from_str(overrides).map_err(|e| invalid(format!("the values given: {e}")))?;
            if let (Some(base), serde_json::Value::Object(extra)) = (merged.as_object_mut(), overrides) {
                base.extend(extra);
            }
        }
        let values: ExportedValues =
            serde_json::from_value(merged).map_err(|e| invalid(format!("the chart's values: {e}")))?;
        let mut objects = Vec::new();
        for (path, template) in self.files.iter().filter(|(path, _)| path.starts_with("templates/")) {
            let mut text = template.replace(IMAGE_EXPR, &values.image).replace(NAMESPACE_EXPR, namespace);
            if let Some(replicas) = values.replica_count {
                text = text.replace(REPLICAS_EXPR, &replicas.to_string());
            }
            for document in serde_norway::Deserializer::from_str(&text) {
                let object = serde_json::Value::deserialize(document).map_err(|e| invalid(format!("{path}: {e}")))?;
                if !object.is_null() {
                    objects.push(object);
                }
            }
        }
        Ok(objects)
    }
}

/// Exports `manifests` (one app's objects, from [`crate::manifest`]) as a minimal chart:
///
/// - `Chart.yaml` (`apiVersion: v2`, `type: application`, name, version, appVersion);
/// - `values.yaml` with `image` (the first container image found) and, when the
///   manifests hold a Deployment, `replicaCount` (its replicas);
/// - one template per object, `templates/<kind>-<name>.yaml`, in which that image,
///   the Deployments' replicas and every `metadata.namespace` become
///   `{{ .Values.image }}`, `{{ .Values.replicaCount }}` and `{{ .Release.Namespace }}`.
///
/// Fails when no object runs a container (the chart would have no image to set).
pub fn export_chart(manifests: &ManifestSet, metadata: &ChartMetadata) -> Result<HelmChart, HelmError> {
    let unmappable = |reason: String| HelmError::Unmappable { release: metadata.name.clone(), revision: 0, reason };
    let mut image = None;
    let mut replicas = None;
    let mut files = BTreeMap::new();
    for document in manifests.documents() {
        let mut object = document.clone();
        let kind = object.get("kind").and_then(serde_json::Value::as_str).unwrap_or("object").to_ascii_lowercase();
        let name = object.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or("unnamed").to_owned();
        if let Some(namespace) = object.pointer_mut("/metadata/namespace") {
            *namespace = NAMESPACE_MARK.into();
        }
        if kind == "deployment"
            && let Some(count) = object.pointer_mut("/spec/replicas")
        {
            replicas.get_or_insert_with(|| count.as_u64().unwrap_or(1));
            *count = REPLICAS_MARK.into();
        }
        mark_images(&mut object, &mut image);
        let yaml = serde_norway::to_string(&object).map_err(|e| unmappable(format!("{kind} {name} as yaml: {e}")))?;
        let template = yaml
            .replace(IMAGE_MARK, IMAGE_EXPR)
            .replace(REPLICAS_MARK, REPLICAS_EXPR)
            .replace(NAMESPACE_MARK, NAMESPACE_EXPR);
        let mut path = format!("templates/{kind}-{name}.yaml");
        let mut n = 2;
        while files.contains_key(&path) {
            path = format!("templates/{kind}-{name}-{n}.yaml");
            n += 1;
        }
        files.insert(path, format!("# Source: exported by deploy-rs\n{template}"));
    }
    let image = image.ok_or_else(|| unmappable("no object runs a container".to_owned()))?;
    let quoted = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
    files.insert(
        "Chart.yaml".to_owned(),
        format!(
            "apiVersion: v2\nname: {}\ndescription: {}\ntype: application\nversion: {}\nappVersion: {}\n",
            metadata.name,
            quoted(&metadata.description),
            quoted(&metadata.version),
            quoted(&metadata.app_version)
        ),
    );
    let mut values = format!("# The image every container of the app runs.\nimage: {}\n", quoted(&image));
    if let Some(replicas) = replicas {
        values.push_str(&format!("# Replicas of the app's Deployment.\nreplicaCount: {replicas}\n"));
    }
    files.insert("values.yaml".to_owned(), values);
    Ok(HelmChart { files })
}

/// Replaces every container image equal to the first one met with the image mark.
fn mark_images(value: &mut serde_json::Value, image: &mut Option<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(containers)) = map.get_mut("containers") {
                for container in containers {
                    if let Some(slot) = container.get_mut("image")
                        && let Some(text) = slot.as_str()
                    {
                        let first = image.get_or_insert_with(|| text.to_owned());
                        if text == first {
                            *slot = IMAGE_MARK.into();
                        }
                    }
                }
            }
            map.values_mut().for_each(|child| mark_images(child, image));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|child| mark_images(child, image)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_templates_image_replicas_and_namespace_and_renders_back() {
        let mut set = ManifestSet::new();
        let deployment = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:1.0.0"}]}}}
        });
        set.push(&deployment).unwrap();
        let chart = export_chart(&set, &ChartMetadata::new("web", "0.1.0", "1.0.0")).unwrap();
        let paths: Vec<&str> = chart.files().keys().map(String::as_str).collect();
        assert_eq!(paths, ["Chart.yaml", "templates/deployment-web.yaml", "values.yaml"]);
        let template = &chart.files()["templates/deployment-web.yaml"];
        assert!(template.contains("image: {{ .Values.image }}"), "{template}");
        assert!(template.contains("replicas: {{ .Values.replicaCount }}"), "{template}");
        assert!(template.contains("namespace: {{ .Release.Namespace }}"), "{template}");
        let rendered = chart.render("prod", None).unwrap();
        assert_eq!(
            rendered,
            [serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "prod"},
                "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:1.0.0"}]}}}
            })]
        );
        let upgraded = chart.render("prod", Some("image: registry.example/web:2.0.0\nreplicaCount: 5\n")).unwrap();
        assert_eq!(upgraded[0].pointer("/spec/replicas"), Some(&serde_json::json!(5)));
        assert_eq!(
            upgraded[0].pointer("/spec/template/spec/containers/0/image"),
            Some(&serde_json::json!("registry.example/web:2.0.0"))
        );
        assert!(export_chart(&ManifestSet::new(), &ChartMetadata::new("web", "0.1.0", "1")).is_err());
    }
}
