//! The estate scan's JSON export: today's audit rows, wrapped with the coverage table, the
//! resources that could not be judged and the keys. These bytes are what the HTML page's
//! SHA-256 covers. `keys --resources FILE` reads `rows` here, or a bare array of rows
//! (the single-account export); docs/organization.md describes the shape.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{CoverageRow, EstateScan, ScanHeader, Unjudged};
use crate::audit::AuditRow;
use crate::verdict::Compliance;

/// What `kind` says: a reader can tell the export from the single-account array.
pub const KIND: &str = "kms-rotation-guard/estate-scan";
pub const VERSION: u32 = 1;

/// One key and who uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    /// The key ARN KMS named, else the reference as written (the key was not found).
    pub key: String,
    pub key_arn: Option<String>,
    pub key_alias: Option<String>,
    pub resources: usize,
    pub accounts: usize,
    /// The worst verdict among the resources on this key.
    pub compliance: Compliance,
}

fn severity(c: Compliance) -> u8 {
    match c {
        Compliance::NonCompliant => 2,
        Compliance::Compliant => 1,
        Compliance::NotApplicable => 0,
    }
}

/// One entry per key the rows name, worst first, then by resources (most first).
pub fn key_usage(rows: &[AuditRow]) -> Vec<KeyUsage> {
    struct Acc<'a> {
        arn: Option<&'a str>,
        alias: Option<&'a str>,
        resources: usize,
        accounts: BTreeSet<&'a str>,
        worst: Compliance,
    }
    let mut keys: BTreeMap<&str, Acc> = BTreeMap::new();
    for r in rows {
        let Some(id) = r.key_arn.as_deref().or(r.key_reference.as_deref()) else { continue };
        let a = keys.entry(id).or_insert(Acc {
            arn: r.key_arn.as_deref(),
            alias: None,
            resources: 0,
            accounts: BTreeSet::new(),
            worst: r.compliance,
        });
        a.resources += 1;
        a.accounts.insert(&r.account);
        a.alias = a.alias.or(r.key_alias.as_deref());
        if severity(r.compliance) > severity(a.worst) {
            a.worst = r.compliance;
        }
    }
    let mut out: Vec<KeyUsage> = keys
        .into_iter()
        .map(|(id, a)| KeyUsage {
            key: id.to_string(),
            key_arn: a.arn.map(str::to_string),
            key_alias: a.alias.map(str::to_string),
            resources: a.resources,
            accounts: a.accounts.len(),
            compliance: a.worst,
        })
        .collect();
    out.sort_by(|a, b| {
        severity(b.compliance).cmp(&severity(a.compliance)).then(b.resources.cmp(&a.resources)).then(a.key.cmp(&b.key))
    });
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Export<'a> {
    kind: &'static str,
    version: u32,
    source: &'a str,
    scan_time: String,
    accounts: &'a [String],
    regions: &'a [String],
    complete: bool,
    rows: &'a [AuditRow],
    coverage: &'a [CoverageRow],
    unjudged: &'a [Unjudged],
    keys: &'a [KeyUsage],
}

/// The export's bytes (pretty JSON, one trailing newline), the same for the same scan.
pub fn json(scan: &EstateScan, header: &ScanHeader) -> String {
    let export = Export {
        kind: KIND,
        version: VERSION,
        source: &header.source,
        scan_time: header.scan_time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        accounts: &header.accounts,
        regions: &header.regions,
        complete: scan.complete(),
        rows: &scan.rows,
        coverage: &scan.coverage,
        unjudged: &scan.unjudged,
        keys: &scan.keys,
    };
    // Plain strings, numbers and options: serialising cannot fail.
    serde_json::to_string_pretty(&export).expect("estate export serialises") + "\n"
}
