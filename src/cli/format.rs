//! `--format`, the same option on every command. Each command lists the formats it can
//! write (`table` and `json` everywhere, `csv` and `html` where they apply); older scripts'
//! `--json` stays accepted as a hidden alias of `--format json`. Only chooses; never prints.

/// The format a command was asked for: `--format`, or `json` for the hidden `--json` alias.
pub fn chosen(format: &str, json_alias: bool) -> &str {
    if json_alias {
        "json"
    } else {
        format
    }
}

/// Key–value lines of a JSON object, for `--format table` of a single record: one field a
/// line, names aligned, absent values shown as `-`.
pub fn fields(value: &serde_json::Value) -> String {
    let Some(object) = value.as_object() else { return format!("{value}\n") };
    let width = object.keys().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, v) in object {
        let text = match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) if items.is_empty() => "-".to_string(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        out.push_str(&format!("{name:<width$}  {text}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_alias_wins_and_records_read_as_aligned_lines() {
        assert_eq!(chosen("table", true), "json");
        assert_eq!(chosen("csv", false), "csv");
        let v = serde_json::json!({ "keyArn": "arn:k", "replicas": [], "quotaLeft": 24, "hsmObject": null });
        assert_eq!(fields(&v), "hsmObject  -\nkeyArn     arn:k\nquotaLeft  24\nreplicas   -\n");
    }
}
