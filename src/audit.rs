//! The auditor's view: one row per resource with its key, the key's age and the verdict,
//! rendered as a table, JSON, CSV or one self-contained HTML page (`html`). Built from the
//! same assessments the handlers make.
//!
//! It presents and does not decide: every verdict comes from the handlers' assessments.

pub mod html;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::handler::Assessment;
use crate::key::{Fact, KeyLookup, KeyRef};
use crate::params::RuleParams;
use crate::resource::Protection;
use crate::rotation::Rotator;
use crate::verdict::{parse_rotation_date, Compliance};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_name: String,
    /// The key as the resource references it.
    pub key_reference: Option<String>,
    pub key_arn: Option<String>,
    pub key_alias: Option<String>,
    pub origin: Option<String>,
    /// From the rotation tag, as YYYY-MM-DD.
    pub rotation_date: Option<String>,
    pub key_age_days: Option<i64>,
    /// `rotation_date` + maxKeyAgeDays, as YYYY-MM-DD: when the next rotation is due.
    pub next_rotation_due: Option<String>,
    /// The key's state (Enabled, PendingImport, …).
    pub key_state: Option<String>,
    /// The newest date KMS itself records key material taking effect (ListKeyRotations,
    /// else creation), as YYYY-MM-DD; `None` where KMS's history was not readable.
    pub kms_rotation_date: Option<String>,
    /// DescribeKey's CurrentKeyMaterialId.
    pub key_material_id: Option<String>,
    /// KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE (imported material).
    pub expiration_model: Option<String>,
    /// When the current imported material expires (RFC 3339).
    pub material_valid_to: Option<String>,
    /// Whether the customer's HSM holds the current material; `None` where not known.
    pub hsm_holds_material: Option<bool>,
    pub compliance: Compliance,
    pub annotation: String,
}

impl AuditRow {
    pub fn new(a: &Assessment, params: &RuleParams, now: DateTime<Utc>) -> AuditRow {
        let r = &a.resource;
        let key = match &r.protection {
            Protection::Kms(k) => Some(k),
            _ => None,
        };
        let facts = match a.lookup.as_deref() {
            Some(KeyLookup::Found(f)) => Some(f),
            _ => None,
        };
        let rotated = facts
            .and_then(|f| match &f.tags {
                Fact::Known(t) => t.get(&params.rotation_tag_key).cloned(),
                _ => None,
            })
            .and_then(|t| parse_rotation_date(&t));
        AuditRow {
            account: r.home.account.clone(),
            region: r.home.region.clone(),
            resource_type: r.resource_type.as_str().to_string(),
            resource_id: r.resource_id.clone(),
            resource_name: r.name.clone(),
            key_reference: key.map(|k| k.to_string()),
            key_arn: facts.map(|f| f.key_arn.clone()),
            key_alias: key.and_then(|k| match k {
                KeyRef::AliasName(_) | KeyRef::AliasArn(_) => Some(k.short().to_string()),
                _ => None,
            }),
            origin: facts.map(|f| f.origin.clone()),
            rotation_date: rotated.map(|d| d.format("%Y-%m-%d").to_string()),
            key_age_days: rotated.map(|d| now.signed_duration_since(d).num_days().max(0)),
            next_rotation_due: rotated
                .and_then(|d| d.checked_add_signed(chrono::Duration::days(params.max_key_age_days)))
                .map(|d| d.format("%Y-%m-%d").to_string()),
            key_state: facts.map(|f| f.state.clone()),
            kms_rotation_date: facts.and_then(|f| f.newest_material_date()).map(|d| d.format("%Y-%m-%d").to_string()),
            key_material_id: facts.and_then(|f| f.current_material_id.clone()),
            expiration_model: facts.and_then(|f| f.expiry().0.map(str::to_string)),
            material_valid_to: facts
                .and_then(|f| f.expiry().1)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            // Custody is known to the HSM, not to the key's facts: `fill_custody` sets it.
            hsm_holds_material: None,
            compliance: a.verdict.compliance,
            annotation: a.verdict.annotation.clone(),
        }
    }
}

/// The keys whose custody the scan can ask about: each distinct key with imported material
/// (origin EXTERNAL) in `account`, whose KMS history (ListKeyRotations, same-account only)
/// these credentials can read.
pub fn custody_keys(rows: &[AuditRow], account: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r.origin.as_deref() == Some("EXTERNAL"))
        .filter_map(|r| r.key_arn.clone())
        .filter(|arn| arn.split(':').nth(4) == Some(account))
        .collect()
}

/// Fills `hsm_holds_material` for the [`custody_keys`] in `account`: one question to KMS and
/// the HSM per key, however many resources use it. A key whose custody cannot be read stays
/// `None` ("unknown", never a guess) and gets a line saying why; so do keys of other accounts.
pub async fn fill_custody(rows: &mut [AuditRow], rotator: &Rotator<'_>, account: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut held = BTreeMap::new();
    for arn in custody_keys(rows, account) {
        match rotator.holds_current_material(&arn).await {
            Ok(Some(h)) => {
                held.insert(arn, h);
            }
            Ok(None) => notes.push(format!("custody of {arn} unknown: KMS names no current key material")),
            Err(e) => notes.push(format!("custody of {arn} unknown: {e}")),
        }
    }
    let elsewhere: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.origin.as_deref() == Some("EXTERNAL"))
        .filter_map(|r| r.key_arn.as_deref())
        .filter(|arn| arn.split(':').nth(4) != Some(account))
        .collect();
    if !elsewhere.is_empty() {
        notes.push(format!(
            "custody of {} key(s) of other accounts unknown: their key material list is readable only \
             from their own account (scan there with the HSM)",
            elsewhere.len()
        ));
    }
    for r in rows.iter_mut() {
        if let Some(h) = r.key_arn.as_ref().and_then(|a| held.get(a)) {
            r.hsm_holds_material = Some(*h);
        }
    }
    notes
}

/// The JSON export: exactly the bytes `scan --format json` prints, and exactly the bytes
/// whose SHA-256 the HTML report embeds as evidence.
pub fn json(rows: &[AuditRow]) -> String {
    // Serialising plain strings, numbers and options cannot fail.
    serde_json::to_string_pretty(rows).expect("audit rows serialise") + "\n"
}

/// The lowercase hex SHA-256 of `bytes`, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A plain-text table; coloured verdicts when `colour`.
pub fn table(rows: &[AuditRow], colour: bool) -> String {
    let header = ["ACCOUNT", "TYPE", "RESOURCE", "KEY", "AGE", "VERDICT", "ANNOTATION"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.account.clone(),
                r.resource_type.trim_start_matches("AWS::").to_string(),
                r.resource_name.clone(),
                r.key_alias
                    .clone()
                    .or_else(|| r.key_reference.as_deref().map(|k| k.rsplit('/').next().unwrap_or(k).to_string()))
                    .unwrap_or_else(|| "-".into()),
                r.key_age_days.map(|d| format!("{d}d")).unwrap_or_else(|| "-".into()),
                r.compliance.as_str().to_string(),
                r.annotation.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for c in &cells {
        for (i, v) in c.iter().enumerate().take(6) {
            width[i] = width[i].max(v.chars().count());
        }
    }
    let line = |c: &[String; 7], paint: bool| {
        let mut s = String::new();
        for (i, v) in c.iter().enumerate() {
            let pad = if i < 6 { width[i] - v.chars().count() + 2 } else { 0 };
            let painted = match (paint, i, v.as_str()) {
                (true, 5, "COMPLIANT") => format!("\x1b[32m{v}\x1b[0m"),
                (true, 5, "NON_COMPLIANT") => format!("\x1b[31m{v}\x1b[0m"),
                (true, 5, _) => format!("\x1b[33m{v}\x1b[0m"),
                _ => v.clone(),
            };
            s.push_str(&painted);
            s.push_str(&" ".repeat(pad));
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header.map(String::from), false);
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c, colour));
        out.push('\n');
    }
    out
}

pub fn csv(rows: &[AuditRow]) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from(
        "account,region,resourceType,resourceId,resourceName,keyReference,keyArn,keyAlias,origin,rotationDate,keyAgeDays,compliance,annotation\n",
    );
    for r in rows {
        let opt = |o: &Option<String>| field(o.as_deref().unwrap_or(""));
        let cols = [
            field(&r.account),
            field(&r.region),
            field(&r.resource_type),
            field(&r.resource_id),
            field(&r.resource_name),
            opt(&r.key_reference),
            opt(&r.key_arn),
            opt(&r.key_alias),
            opt(&r.origin),
            opt(&r.rotation_date),
            r.key_age_days.map(|d| d.to_string()).unwrap_or_default(),
            r.compliance.as_str().to_string(),
            field(&r.annotation),
        ];
        out.push_str(&cols.join(","));
        out.push('\n');
    }
    out
}

/// Colour only for a person at a terminal, and never when NO_COLOR is set.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn row(annotation: &str) -> AuditRow {
        AuditRow {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            resource_type: "AWS::S3::Bucket".into(),
            resource_id: "b".into(),
            resource_name: "b".into(),
            key_reference: Some("alias/x".into()),
            key_arn: None,
            key_alias: Some("alias/x".into()),
            origin: Some("EXTERNAL".into()),
            rotation_date: Some("2026-01-01".into()),
            key_age_days: Some(326),
            next_rotation_due: Some("2027-01-01".into()),
            key_state: Some("Enabled".into()),
            kms_rotation_date: None,
            key_material_id: None,
            expiration_model: None,
            material_valid_to: None,
            hsm_holds_material: None,
            compliance: Compliance::NonCompliant,
            annotation: annotation.into(),
        }
    }

    #[test]
    fn custody_is_asked_once_per_imported_key_of_the_account() {
        let on =
            |arn: &str, origin: &str| AuditRow { key_arn: Some(arn.into()), origin: Some(origin.into()), ..row("a") };
        let k1 = "arn:aws:kms:eu-west-1:111122223333:key/k1";
        let rows = [
            on(k1, "EXTERNAL"),
            on(k1, "EXTERNAL"),
            on("arn:aws:kms:eu-west-1:111122223333:key/k2", "AWS_KMS"),
            on("arn:aws:kms:eu-west-1:444455556666:key/k3", "EXTERNAL"),
            row("no key found"),
        ];
        assert_eq!(custody_keys(&rows, "111122223333").into_iter().collect::<Vec<_>>(), [k1]);
    }

    #[test]
    fn sha256_matches_the_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let out = csv(&[row("tag says \"x\", newest is y")]);
        assert!(out.lines().nth(1).unwrap().ends_with(",NON_COMPLIANT,\"tag says \"\"x\"\", newest is y\""), "{out}");
    }

    #[test]
    fn table_aligns_and_colours_only_when_asked() {
        let plain = table(&[row("a"), row("b")], false);
        assert!(!plain.contains('\x1b') && plain.contains("326d") && plain.lines().count() == 3);
        assert!(table(&[row("a")], true).contains("\x1b[31mNON_COMPLIANT"));
    }
}
