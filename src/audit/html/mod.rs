//! The auditor's report: one self-contained HTML page (no network, no external scripts,
//! fonts or images) that can be attached to an audit ticket.
//!
//! Everything on the page is derived from the audit rows plus the scan's header, and the
//! rows' JSON export (`super::json`) is embedded verbatim with its SHA-256, so that a copy
//! can be checked against the JSON export. Every value from AWS goes through maud's
//! escaping; the only unescaped text is this module's own CSS and script.
//!
//! The parts: this file folds the rows by key and lays out the page; `sections` renders the
//! key-age picture and the two tables; `assets` holds the page's own CSS and script.

mod assets;
/// The page's style, shared with the runbook's inventory page.
pub(crate) use assets::CSS as STYLE;
pub(crate) mod parts;
mod sections;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, PreEscaped, DOCTYPE};

use super::AuditRow;
use crate::params::RuleParams;
use crate::verdict::Compliance;
// The organization page (estate::report) uses the same style and script.
pub(crate) use assets::{CSS, JS};
use parts::{rule_parameters, severity, verdict_cards};
use sections::{age_chart, keys_table, resources};

/// What the page says about the scan itself.
#[derive(Debug, Clone)]
pub struct ReportHeader {
    /// The accounts whose resources were judged.
    pub accounts: Vec<String>,
    pub region: String,
    pub scan_time: DateTime<Utc>,
    pub params: RuleParams,
    pub tool_version: String,
}

impl ReportHeader {
    pub fn new(accounts: Vec<String>, region: &str, scan_time: DateTime<Utc>, params: &RuleParams) -> ReportHeader {
        ReportHeader {
            accounts,
            region: region.to_string(),
            scan_time,
            params: params.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// `--now` exactly as the scan used it, so a rerun reproduces the JSON bytes.
    fn now_arg(&self) -> String {
        self.scan_time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

/// One key as the page shows it: the rows that use it, folded together.
struct KeyView<'a> {
    /// The key ARN, or the reference as written when the key was not found.
    id: String,
    aliases: BTreeSet<&'a str>,
    first: &'a AuditRow,
    /// The worst verdict among the resources on this key.
    verdict: Compliance,
    resources: usize,
}

impl KeyView<'_> {
    /// Age of the material in days, from the rotation tag, else from KMS's own record.
    fn age(&self, now: DateTime<Utc>) -> Option<(i64, &'static str)> {
        parts::material_age(self.first, now)
    }

    fn label(&self) -> String {
        match self.aliases.iter().next() {
            Some(a) => a.to_string(),
            None => short_key(&self.id),
        }
    }
}

fn short_key(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

fn keys(rows: &[AuditRow]) -> Vec<KeyView<'_>> {
    let mut by_key: BTreeMap<String, KeyView> = BTreeMap::new();
    for r in rows {
        let Some(id) = r.key_arn.clone().or_else(|| r.key_reference.clone()) else { continue };
        let k = by_key.entry(id.clone()).or_insert_with(|| KeyView {
            id,
            aliases: BTreeSet::new(),
            first: r,
            verdict: r.compliance,
            resources: 0,
        });
        k.aliases.extend(r.key_alias.as_deref());
        k.resources += 1;
        if severity(r.compliance) > severity(k.verdict) {
            k.verdict = r.compliance;
        }
    }
    let mut keys: Vec<KeyView> = by_key.into_values().collect();
    // Worst first, then the oldest (unknown ages count as oldest).
    keys.sort_by_key(|k| {
        (std::cmp::Reverse(severity(k.verdict)), std::cmp::Reverse(k.first.key_age_days.unwrap_or(i64::MAX)), k.label())
    });
    keys
}

/// The whole page. `rows` are rendered in the order given within each account and service.
pub fn render(header: &ReportHeader, rows: &[AuditRow]) -> String {
    let payload = super::json(rows);
    let digest = super::sha256_hex(payload.as_bytes());
    let count = |c: Compliance| rows.iter().filter(|r| r.compliance == c).count();
    let (ok, bad, na) =
        (count(Compliance::Compliant), count(Compliance::NonCompliant), count(Compliance::NotApplicable));
    let keys = keys(rows);
    let key_accounts: BTreeSet<&str> =
        keys.iter().filter_map(|k| k.first.key_arn.as_deref()).filter_map(|a| a.split(':').nth(4)).collect();
    let scan_time = header.scan_time.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let p = &header.params;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "kms-rotation-guard " (header.tool_version) };
                title { "KMS key rotation evidence · " (header.accounts.join(", ")) " · " (header.scan_time.format("%Y-%m-%d")) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top {
                    div {
                        h1 { "KMS key material rotation — audit evidence" }
                        p.sub {
                            "Every encrypted RDS instance and cluster, DynamoDB table and S3 bucket, judged against its KMS key's "
                            "rotation record at " strong { (scan_time) } "."
                        }
                    }
                    @if bad > 0 {
                        div.overall.bad id="overall" { (bad) " non-compliant" }
                    } @else {
                        div.overall.ok id="overall" { "All compliant" }
                    }
                }
                main {
                    section.summary {
                        div.cards {
                            (verdict_cards(ok, bad, na, keys.len()))
                        }
                        dl.meta {
                            dt { "Accounts scanned" } dd { (header.accounts.join(", ")) }
                            dt { "Key accounts" } dd { @if key_accounts.is_empty() { "—" } @else { (key_accounts.into_iter().collect::<Vec<_>>().join(", ")) } }
                            dt { "Region" } dd { (header.region) }
                            dt { "Scan time" } dd { time datetime=(header.now_arg()) { (scan_time) } }
                            dt { "Rule parameters" }
                            dd.params { (rule_parameters(p)) }
                            dt { "Tool" } dd { "kms-rotation-guard " (header.tool_version) }
                        }
                    }
                    section id="ages" {
                        h2 { "Key material age" }
                        p.hint {
                            "One bar per key: days since its material was last imported or rotated, against the limit of "
                            (p.max_key_age_days) " days (dashed line). Colour is the worst verdict of the resources on the key."
                        }
                        (age_chart(&keys, header))
                    }
                    section id="keys" {
                        h2 { "Keys" }
                        (keys_table(&keys))
                    }
                    section id="resources" {
                        h2 { "Resources" }
                        (resources(rows, &keys))
                    }
                }
                footer id="evidence" {
                    h2 { "Evidence" }
                    p {
                        "SHA-256 of this report's JSON payload: "
                        code.digest id="payload-sha256" { (digest) }
                    }
                    p.hint {
                        "The payload is the exact output (UTF-8, " (payload.len()) " bytes) of "
                        code { "kms-rotation-guard scan --format json --now " (header.now_arg()) }
                        " for the same accounts and parameters, and is embedded below. To check a JSON export against this page: "
                        code { "sha256sum export.json" } "."
                    }
                    details {
                        summary { "JSON payload" }
                        pre id="payload" { (payload) }
                    }
                    p.hint { "Generated by kms-rotation-guard " (header.tool_version) " · self-contained: no network, scripts, fonts or images are loaded." }
                }
                script { (PreEscaped(JS)) }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests;
