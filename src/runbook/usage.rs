//! Which resources use which key, from a scan: `scan --format json` of one account (a
//! top-level array of audit rows) or of the organization (an object with `rows`,
//! `coverage`, `unjudged` and `scanTime`; docs/organization.md). Only the fields
//! `account`, `region`, `resourceType`, `resourceId`, `keyArn` (and `keyReference`) are
//! read, so either export works. Pure: bytes in, usage out.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::RunbookError;

/// One resource and the key it uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
    pub key_arn: Option<String>,
    pub key_reference: Option<String>,
}

/// A scan's answer to "who uses which key", and what it could not see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    pub rows: Vec<UsageRow>,
    /// When the scan ran, if the export says (the organization form's `scanTime`).
    pub scan_time: Option<DateTime<Utc>>,
    /// What the scan could not see: account × Region not scanned, resources not judged.
    pub blind_spots: Vec<String>,
}

impl ResourceUsage {
    pub fn parse(bytes: &[u8]) -> Result<ResourceUsage, RunbookError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| RunbookError::Input(format!("the scan export is not JSON: {e}")))?;
        let (rows, object) = match &v {
            Value::Array(rows) => (rows.as_slice(), None),
            Value::Object(o) => match o.get("rows").and_then(Value::as_array) {
                Some(rows) => (rows.as_slice(), Some(o)),
                None => {
                    return Err(RunbookError::Input(
                        "the scan export has no rows: give `scan --format json` output (an array of rows, or the \
                         organization export with \"rows\")"
                            .into(),
                    ))
                }
            },
            _ => return Err(RunbookError::Input("the scan export must be a JSON array or object".into())),
        };
        let field = |r: &Value, name: &str| r.get(name).and_then(Value::as_str).map(str::to_string);
        let mut usage = ResourceUsage::default();
        for (i, r) in rows.iter().enumerate() {
            let need = |name: &str| {
                field(r, name).ok_or_else(|| {
                    RunbookError::Input(format!("row {i} of the scan export has no {name:?} (is this a scan export?)"))
                })
            };
            usage.rows.push(UsageRow {
                account: need("account")?,
                region: need("region")?,
                resource_type: need("resourceType")?,
                resource_id: need("resourceId")?,
                key_arn: field(r, "keyArn"),
                key_reference: field(r, "keyReference"),
            });
        }
        if let Some(o) = object {
            usage.scan_time = o.get("scanTime").and_then(Value::as_str).and_then(crate::event::parse_time);
            for c in o.get("coverage").and_then(Value::as_array).into_iter().flatten() {
                if field(c, "status").as_deref() != Some("scanned") {
                    usage.blind_spots.push(format!(
                        "{} {}: {} ({})",
                        field(c, "account").unwrap_or_default(),
                        field(c, "region").unwrap_or_default(),
                        field(c, "status").unwrap_or_default(),
                        field(c, "reason").unwrap_or_else(|| "no reason given".into())
                    ));
                }
            }
            for u in o.get("unjudged").and_then(Value::as_array).into_iter().flatten() {
                usage.blind_spots.push(format!(
                    "{} {} {} {} uses {} (its key could not be read: {})",
                    field(u, "account").unwrap_or_default(),
                    field(u, "region").unwrap_or_default(),
                    field(u, "resourceType").unwrap_or_default(),
                    field(u, "resourceId").unwrap_or_default(),
                    field(u, "keyReference").unwrap_or_else(|| "an unknown key".into()),
                    field(u, "reason").unwrap_or_default()
                ));
            }
        }
        Ok(usage)
    }

    /// The resources on `key_arn`: by resolved ARN, or by a reference that names its key id.
    pub fn users_of(&self, key_arn: &str) -> Vec<&UsageRow> {
        let id = key_arn.rsplit('/').next().unwrap_or(key_arn);
        self.rows
            .iter()
            .filter(|r| match (&r.key_arn, &r.key_reference) {
                (Some(a), _) => a == key_arn,
                (None, Some(reference)) => reference == key_arn || reference.ends_with(id) && !id.is_empty(),
                (None, None) => false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "arn:aws:kms:eu-west-1:111111111111:key/k1";

    #[test]
    fn reads_todays_export_and_the_organization_export() {
        let today = format!(
            r#"[{{"account":"123456789012","region":"eu-west-1","resourceType":"AWS::S3::Bucket","resourceId":"b",
                 "resourceName":"b","keyArn":"{K1}","compliance":"COMPLIANT","annotation":"ok"}}]"#
        );
        let u = ResourceUsage::parse(today.as_bytes()).unwrap();
        assert_eq!(u.users_of(K1).len(), 1);
        assert!(u.scan_time.is_none() && u.blind_spots.is_empty());

        let org = format!(
            r#"{{"kind":"kms-rotation-guard/estate-scan","version":1,"scanTime":"2026-12-05T00:00:00Z",
                "rows":[{{"account":"2","region":"eu-west-1","resourceType":"AWS::RDS::DBInstance","resourceId":"db-1","keyArn":"{K1}"}}],
                "coverage":[{{"account":"3","region":"eu-west-1","status":"not-scanned","reason":"role missing","resources":0}},
                            {{"account":"2","region":"eu-west-1","status":"scanned","reason":null,"resources":1}}],
                "unjudged":[{{"account":"2","region":"eu-west-1","resourceType":"AWS::S3::Bucket","resourceId":"x","keyReference":"alias/a","reason":"denied"}}]}}"#
        );
        let u = ResourceUsage::parse(org.as_bytes()).unwrap();
        assert_eq!(u.users_of(K1)[0].resource_id, "db-1");
        assert_eq!(u.scan_time.unwrap().to_rfc3339(), "2026-12-05T00:00:00+00:00");
        assert_eq!(u.blind_spots.len(), 2, "{:?}", u.blind_spots);
    }

    #[test]
    fn bad_exports_are_named() {
        for bad in [&b"{"[..], b"42", br#"{"x":1}"#, br#"[{"account":"1"}]"#] {
            let e = ResourceUsage::parse(bad).unwrap_err();
            assert!(matches!(e, RunbookError::Input(_)), "{e}");
        }
    }
}
