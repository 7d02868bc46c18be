//! The per-key parts of the organization's page: the age chart and the keys table.

use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup};

use super::{badge, severity, verdict_class};
use crate::audit::AuditRow;
use crate::estate::{EstateScan, KeyUsage, ScanHeader};
use crate::params::RuleParams;

/// The age a key's bar shows: from its rotation tag, else from KMS's record.
fn key_age(rows: &[AuditRow], key: &KeyUsage, now: DateTime<Utc>) -> Option<(i64, &'static str)> {
    let first = rows.iter().find(|r| r.key_arn.as_deref().or(r.key_reference.as_deref()) == Some(key.key.as_str()))?;
    if let Some(d) = first.key_age_days {
        return Some((d, "tag"));
    }
    let kms = NaiveDate::parse_from_str(first.kms_rotation_date.as_deref()?, "%Y-%m-%d").ok()?;
    Some(((now.date_naive() - kms).num_days().max(0), "KMS"))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
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

const BAR_H: u32 = 30;

pub(super) fn age_chart(scan: &EstateScan, header: &ScanHeader, p: &RuleParams) -> Markup {
    let limit = p.max_key_age_days.max(1);
    let mut bars: Vec<(&KeyUsage, Option<(i64, &str)>)> =
        scan.keys.iter().map(|k| (k, key_age(&scan.rows, k, header.scan_time))).collect();
    bars.sort_by_key(|(k, age)| {
        (std::cmp::Reverse(severity(k.compliance)), std::cmp::Reverse(age.map_or(i64::MAX, |a| a.0)))
    });
    let oldest = bars.iter().filter_map(|(_, a)| a.map(|a| a.0)).max().unwrap_or(0);
    let scale_max = (limit as f64 * 1.25).max(oldest as f64 * 1.05);
    let (x0, width) = (230.0, 420.0);
    let x = |days: f64| x0 + width * (days / scale_max).min(1.0);
    let height = 40 + BAR_H * bars.len().max(1) as u32 + 10;
    let limit_x = x(limit as f64);
    html! {
        @if bars.is_empty() {
            p.empty { "No resource uses a KMS key." }
        } @else {
            svg.chart viewBox={ "0 0 960 " (height) } role="img"
                aria-label="Key material age per key against the maximum age" {
                @for i in 0..=4 {
                    @let days = scale_max * f64::from(i) / 4.0;
                    line.grid x1=(x(days)) x2=(x(days)) y1="28" y2=(height - 10) {}
                    text.axis x=(x(days)) y="20" text-anchor="middle" { (days.round() as i64) "d" }
                }
                @for (i, (k, age)) in bars.iter().enumerate() {
                    @let y = 34 + BAR_H * i as u32;
                    g.bar data-key=(k.key) data-verdict=(k.compliance.as_str()) data-resources=(k.resources) data-accounts=(k.accounts) {
                        title { (key_label(k)) " — " (k.key) " — " (k.compliance.as_str()) }
                        text.label x=(x0 - 10.0) y=(y + 15) text-anchor="end" { (truncate(&key_label(k), 30)) }
                        @match age {
                            Some((days, source)) => {
                                rect class={ "fill " (verdict_class(k.compliance)) } x=(x0) y=(y + 3) rx="3"
                                    width=(format!("{:.1}", (x(*days as f64) - x0).max(2.0))) height=(BAR_H - 10) {}
                                text.value x=(x(*days as f64) + 6.0) y=(y + 15) {
                                    (days) "d" @if *source == "KMS" { " per KMS" }
                                }
                            }
                            None => {
                                rect.unknown x=(x0) y=(y + 3) rx="3" width=(width) height=(BAR_H - 10) {}
                                text.value x=(x0 + 8.0) y=(y + 15) { "age unknown: no rotation date" }
                            }
                        }
                        text.due x="950" y=(y + 15) text-anchor="end" {
                            (k.resources) " resources in " (k.accounts) @if k.accounts == 1 { " account" } @else { " accounts" }
                        }
                    }
                }
                line.limit x1=(limit_x) x2=(limit_x) y1="26" y2=(height - 6) {}
                text.limit x=(limit_x) y="9" text-anchor="middle" { "max " (limit) "d" }
            }
        }
    }
}
