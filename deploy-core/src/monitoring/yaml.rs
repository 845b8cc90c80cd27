//! A block-YAML writer for JSON values.

use serde_json::Value;

/// Writes `value` as block YAML. Strings are always double-quoted with JSON
/// escapes (valid YAML double-quoted scalars), so no value is ever read back as a
/// different type (`"on"`, `"1.0"`, `"null"` stay strings).
///
/// ```
/// use deploy_core::monitoring::to_yaml;
/// let v = serde_json::json!({"groups": [{"name": "web", "rules": []}], "on": "yes"});
/// assert_eq!(to_yaml(&v), "groups:\n  - name: \"web\"\n    rules: []\n\"on\": \"yes\"\n");
/// ```
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // serde_json's string output is a valid YAML double-quoted scalar.
        other => other.to_string(),
    }
}

fn key_text(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain { k.to_owned() } else { Value::String(k.to_owned()).to_string() }
}

fn write_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(k));
        out.push(':');
        write_value_after_key(v, indent, out);
    }
}

fn write_value_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(a, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn write_seq(a: &[Value], indent: usize, out: &mut String) {
    for v in a {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => {
                // The first entry shares the dash's line; the rest align under it.
                let mut first = true;
                for (k, val) in m {
                    if !first {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    first = false;
                    out.push_str(&key_text(k));
                    out.push(':');
                    write_value_after_key(val, indent + 2, out);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(inner, indent + 2, out);
            }
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_documents_and_awkward_strings() {
        let v = serde_json::json!({
            "a": {"b": [1, {"c": "x\"y\n", "d": [[true, null]]}], "e": {}},
            "key with space": 1.5,
        });
        let expected = "a:\n  b:\n    - 1\n    - c: \"x\\\"y\\n\"\n      d:\n        - \n          - true\n          - null\n  e: {}\n\"key with space\": 1.5\n";
        assert_eq!(to_yaml(&v), expected);
    }
}
