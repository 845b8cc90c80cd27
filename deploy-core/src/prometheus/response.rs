//! The JSON of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::metrics::{MetricValue, Sample};

/// The envelope of every answer.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) data: Option<Data>,
    #[serde(default, rename = "errorType")]
    pub(crate) error_type: Option<String>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// A sample as the API writes it: `[unix seconds, "value"]`.
type Point = (f64, String);

#[derive(Debug, Deserialize)]
pub(crate) struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for native histograms, which a threshold cannot judge.
    #[serde(default)]
    value: Option<Point>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Point>,
}

/// The `data` member, by `resultType`.
#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub(crate) enum Data {
    Scalar(Point),
    String(Point),
    Vector(Vec<VectorSample>),
    Matrix(Vec<Series>),
}

/// Prometheus writes values as strings, with `NaN`, `+Inf` and `-Inf` spelled so.
fn number(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other.parse::<f64>().map_err(|_| format!("sample value {other:?} is not a number")),
    }
}

impl Data {
    /// An instant query's answer as a [`MetricValue`]: NaN scalars and NaN samples
    /// are no data, so that `0 / 0` on a track without traffic is inconclusive.
    pub(crate) fn into_value(self) -> Result<MetricValue, String> {
        match self {
            Self::Scalar((_, v)) => {
                let v = number(&v)?;
                Ok(if v.is_nan() { MetricValue::Empty } else { MetricValue::Scalar(v) })
            }
            Self::Vector(samples) => {
                let mut out = Vec::with_capacity(samples.len());
                for s in samples {
                    let Some((_, v)) = s.value else { continue };
                    let v = number(&v)?;
                    if !v.is_nan() {
                        out.push(Sample::new(s.metric, v));
                    }
                }
                Ok(if out.is_empty() { MetricValue::Empty } else { MetricValue::Vector(out) })
            }
            Self::String((_, text)) => Err(format!("the query returned the string {text:?}, not a number")),
            Self::Matrix(_) => Err("an instant query returned a range vector; drop the [range] selector".to_owned()),
        }
    }

    /// A range query's answer as values in time order, NaN dropped. Several series
    /// are refused: their values would mix different things.
    pub(crate) fn into_series(self) -> Result<Vec<f64>, String> {
        match self {
            Self::Matrix(series) if series.is_empty() => Ok(Vec::new()),
            Self::Matrix(mut series) if series.len() == 1 => {
                let series = series.remove(0);
                let mut values = Vec::with_capacity(series.values.len());
                for (_, v) in &series.values {
                    let v = number(v)?;
                    if !v.is_nan() {
                        values.push(v);
                    }
                }
                Ok(values)
            }
            Self::Matrix(series) => Err(format!(
                "the range query returned {} series ({}); aggregate them to one, for example with sum()",
                series.len(),
                series.iter().take(3).map(|s| format!("{:?}", s.metric)).collect::<Vec<_>>().join(", ")
            )),
            _ => Err("a range query must return a matrix".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Data {
        serde_json::from_str::<Envelope>(json).unwrap().data.unwrap()
    }

    #[test]
    fn scalars_vectors_and_nan() {
        let v = data(r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"0.995"]}}"#);
        assert_eq!(v.into_value().unwrap(), MetricValue::Scalar(0.995));
        let v = data(r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}"#);
        assert_eq!(v.into_value().unwrap(), MetricValue::Empty);
        let v = data(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"track":"canary"},"value":[1700000000,"+Inf"]},
                {"metric":{"track":"stable"},"value":[1700000000,"NaN"]}]}}"#,
        );
        let MetricValue::Vector(samples) = v.into_value().unwrap() else { panic!("a vector") };
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].labels["track"], "canary");
        assert_eq!(samples[0].value, f64::INFINITY);
        let v = data(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert_eq!(v.into_value().unwrap(), MetricValue::Empty);
        let v = data(r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#);
        assert!(v.into_value().is_err());
    }

    #[test]
    fn matrices() {
        let v = data(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{},"values":[[1,"1"],[2,"NaN"],[3,"3.5"]]}]}}"#,
        );
        assert_eq!(v.into_series().unwrap(), [1.0, 3.5]);
        let v = data(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#);
        assert!(v.into_series().unwrap().is_empty());
        let v = data(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"a":"1"},"values":[[1,"1"]]},{"metric":{"a":"2"},"values":[[1,"2"]]}]}}"#,
        );
        assert!(v.into_series().unwrap_err().contains("2 series"));
        let v =
            data(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#);
        assert!(v.into_series().unwrap_err().contains("not a number"));
    }
}
