//! The per-key parts of the organization's page: the age chart and the keys table.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use crate::audit::html::parts::{self, badge, severity, Bar, ORGANIZATION_CHART};
use crate::audit::AuditRow;
use crate::estate::{EstateScan, KeyUsage, ScanHeader};
use crate::params::RuleParams;

/// The age a key's bar shows (`parts::material_age` of the first row on the key).
fn key_age(rows: &[AuditRow], key: &KeyUsage, now: DateTime<Utc>) -> Option<(i64, &'static str)> {
    let first = rows.iter().find(|r| r.key_arn.as_deref().or(r.key_reference.as_deref()) == Some(key.key.as_str()))?;
    parts::material_age(first, now)
}

fn key_label(k: &KeyUsage) -> String {
    k.key_alias.clone().unwrap_or_else(|| k.key.rsplit('/').next().unwrap_or(&k.key).to_string())
}

/// One row per key: who uses it, whether the HSM holds its current material, the worst verdict.
pub(super) fn keys_table(scan: &EstateScan) -> Markup {
    html! {
        @if scan.keys.is_empty() {
            p.empty { "No resource uses a KMS key." }
        } @else {
            div.scroll { table.sortable id="keys-table" {
                thead { tr {
                    th { "Key (alias, ARN)" } th { "Resources" } th { "Accounts" }
                    th title="Whether the customer's HSM holds the current key material" { "HSM holds material" }
                    th { "Verdict" }
                } }
                tbody {
                    @for k in &scan.keys {
                        @let held = scan.rows.iter()
                            .find(|r| r.key_arn.as_deref().or(r.key_reference.as_deref()) == Some(k.key.as_str()))
                            .and_then(|r| r.hsm_holds_material);
                        tr data-key=(k.key) data-verdict=(k.compliance.as_str()) {
                            td.key data-sort=(key_label(k)) {
                                @if let Some(a) = &k.key_alias { div.alias { (a) } }
                                div.arn { (k.key) }
                            }
                            td.num { (k.resources) }
                            td.num { (k.accounts) }
                            td {
                                @match held {
                                    Some(true) => span.custody.ok { "held" },
                                    Some(false) => span.custody.bad title="KMS is the only holder of this material" { "NOT HELD" },
                                    None => span.custody.na { "unknown" },
                                }
                            }
                            td data-sort=(severity(k.compliance)) { (badge(k.compliance)) }
                        }
                    }
                }
            } }
        }
    }
}

/// The key-age chart (`parts::age_chart`), each bar saying how many resources in how many
/// accounts use its key.
pub(super) fn age_chart(scan: &EstateScan, header: &ScanHeader, p: &RuleParams) -> Markup {
    let bars = scan
        .keys
        .iter()
        .map(|k| Bar {
            key: k.key.clone(),
            label: key_label(k),
            verdict: k.compliance,
            age: key_age(&scan.rows, k, header.scan_time),
            note: format!(
                "{} resources in {} {}",
                k.resources,
                k.accounts,
                if k.accounts == 1 { "account" } else { "accounts" }
            ),
            overdue: false,
            usage: Some((k.resources, k.accounts)),
        })
        .collect();
    parts::age_chart(bars, p.max_key_age_days, &ORGANIZATION_CHART)
}
