//! Turning serde errors into [`ScanError::Malformed`] with the JSON path.

use deploy_core::scan::ScanError;
use serde::de::DeserializeOwned;

/// Parses `bytes` as JSON into `T`; an error names the JSON path where it happened
/// (`.Results[2].Vulnerabilities[0].Severity`).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ScanError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { path } else { format!(".{path}") };
        ScanError::Malformed { path, reason: e.into_inner().to_string() }
    })?;
    deserializer.end().map_err(|e| ScanError::Malformed { path: ".".to_owned(), reason: e.to_string() })?;
    Ok(value)
}
