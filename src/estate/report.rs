//! The organization's page: one self-contained HTML report for an estate scan, in the
//! single-account report's style (`audit::html`).
//!
//! - a summary of accounts × services with the counts, worst first;
//! - the coverage: what could not be seen, and why;
//! - one bar per key, with how many resources in how many accounts use it;
//! - a section per account (collapsed; the worst open);
//! - the same evidence footer: the SHA-256 of the estate export's JSON (`export::json`), with
//!   the JSON embedded verbatim up to [`EMBED_LIMIT`]; above it the page links the export by
//!   file name and digest instead (measured: 300 accounts × 30 resources make a 6.8 MiB export,
//!   9.5 MiB once HTML-escaped, and the page took 10.8 s to load in headless Chromium; linked,
//!   see docs/organization.md). Every value from AWS goes through maud's escaping.

mod keys;

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use maud::{html, PreEscaped, DOCTYPE};

use super::{export, CoverageStatus, EstateScan, ScanHeader};
use crate::audit::html::parts::{badge, rule_parameters, severity, verdict_cards, verdict_class};
use crate::audit::html::{CSS, JS};
use crate::audit::{sha256_hex, AuditRow};
use crate::params::RuleParams;
use crate::verdict::Compliance;
use keys::{age_chart, keys_table};

/// Extra style for what only the organization page has.
const ESTATE_CSS: &str = r#"
table.matrix td.cell{white-space:nowrap}
td.cell .bad{color:#b42318;font-weight:600}
details.account{margin:.6rem 0;border:1px solid #e4e7ec;border-radius:8px;padding:.4rem .8rem}
details.account>summary{cursor:pointer;font-weight:600}
span.cov{font-size:.8rem;padding:.1rem .4rem;border-radius:4px;margin-left:.5rem}
span.cov.scanned{background:#ecfdf3;color:#027a48}
span.cov.partial{background:#fffaeb;color:#b54708}
span.cov.not-scanned{background:#fef3f2;color:#b42318}
"#;

const SERVICES: [(&str, &str); 3] =
    [("RDS", "AWS::RDS::"), ("DynamoDB", "AWS::DynamoDB::Table"), ("S3", "AWS::S3::Bucket")];

/// One account's line of the summary.
struct AccountView<'a> {
    id: &'a str,
    rows: Vec<&'a AuditRow>,
    /// (non-compliant, total) per service.
    per_service: [(usize, usize); 3],
    bad: usize,
    /// The worst coverage of its Regions.
    coverage: CoverageStatus,
    reasons: Vec<String>,
}

fn accounts<'a>(scan: &'a EstateScan, header: &'a ScanHeader) -> Vec<AccountView<'a>> {
    let mut by: BTreeMap<&str, AccountView> = header
        .accounts
        .iter()
        .map(|a| {
            (
                a.as_str(),
                AccountView {
                    id: a,
                    rows: Vec::new(),
                    per_service: [(0, 0); 3],
                    bad: 0,
                    coverage: CoverageStatus::Scanned,
                    reasons: Vec::new(),
                },
            )
        })
        .collect();
    for r in &scan.rows {
        let Some(a) = by.get_mut(r.account.as_str()) else { continue };
        if let Some(i) = SERVICES.iter().position(|(_, prefix)| r.resource_type.starts_with(prefix)) {
            a.per_service[i].1 += 1;
            if r.compliance == Compliance::NonCompliant {
                a.per_service[i].0 += 1;
            }
        }
        if r.compliance == Compliance::NonCompliant {
            a.bad += 1;
        }
        a.rows.push(r);
    }
    for c in &scan.coverage {
        if let Some(a) = by.get_mut(c.account.as_str()) {
            a.coverage = a.coverage.max(c.status);
            if let Some(why) = &c.reason {
                a.reasons.push(format!("{}: {why}", c.region));
            }
        }
    }
    let mut out: Vec<AccountView> = by.into_values().collect();
    // Worst first: not seen, then most non-compliant, then by id.
    out.sort_by(|a, b| b.coverage.cmp(&a.coverage).then(b.bad.cmp(&a.bad)).then(a.id.cmp(b.id)));
    for a in &mut out {
        a.rows
            .sort_by_key(|r| (std::cmp::Reverse(severity(r.compliance)), r.region.as_str(), r.resource_name.as_str()));
    }
    out
}

/// Exports up to this size are embedded in the page; larger ones are linked by digest.
pub const EMBED_LIMIT: usize = 1024 * 1024;

/// A rendered page, and the JSON export its digest covers.
pub struct Page {
    pub html: String,
    /// The export's bytes (`export::json`).
    pub json: String,
    /// The JSON is inside the page; when false, write `json` to the file the page names.
    pub embedded: bool,
}

/// The whole page. `json_file_name` is what the page calls the export when it is too large
/// to embed (the caller writes [`Page::json`] there).
pub fn render(header: &ScanHeader, scan: &EstateScan, params: &RuleParams, json_file_name: &str) -> Page {
    let payload = export::json(scan, header);
    let digest = sha256_hex(payload.as_bytes());
    let embedded = payload.len() <= EMBED_LIMIT;
    let count = |c: Compliance| scan.rows.iter().filter(|r| r.compliance == c).count();
    let (ok, bad, na) =
        (count(Compliance::Compliant), count(Compliance::NonCompliant), count(Compliance::NotApplicable));
    let views = accounts(scan, header);
    let unseen: Vec<_> = scan.coverage.iter().filter(|c| c.status != CoverageStatus::Scanned).collect();
    let scan_time = header.scan_time.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let now_arg = header.scan_time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let p = params;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "kms-rotation-guard " (env!("CARGO_PKG_VERSION")) };
                title { "KMS key rotation evidence · organization · " (header.accounts.len()) " accounts · " (header.scan_time.format("%Y-%m-%d")) }
                style { (PreEscaped(CSS)) (PreEscaped(ESTATE_CSS)) }
            }
            body {
                header.top {
                    div {
                        h1 { "KMS key material rotation — organization evidence" }
                        p.sub {
                            "Every encrypted RDS instance and cluster, DynamoDB table and S3 bucket of "
                            strong { (header.accounts.len()) " accounts" } " in " (header.regions.join(", "))
                            ", judged against its KMS key's rotation record at " strong { (scan_time) } "."
                        }
                    }
                    @if !scan.complete() {
                        div.overall.bad id="overall" { "Incomplete: " (unseen.len()) " account × Region not fully seen" }
                    } @else if bad > 0 {
                        div.overall.bad id="overall" { (bad) " non-compliant" }
                    } @else {
                        div.overall.ok id="overall" { "All compliant" }
                    }
                }
                main {
                    section.summary {
                        div.cards {
                            (verdict_cards(ok, bad, na, scan.keys.len()))
                            div.card.keys { span.n id="count-unseen" { (unseen.len() + scan.unjudged.len()) } span.l { "not seen" } }
                        }
                        dl.meta {
                            dt { "Accounts" } dd { (header.accounts.len()) }
                            dt { "Regions" } dd { (header.regions.join(", ")) }
                            dt { "Source" } dd { code { (header.source) } }
                            dt { "Scan time" } dd { time datetime=(now_arg) { (scan_time) } }
                            dt { "Rule parameters" }
                            dd.params { (rule_parameters(p)) }
                        }
                    }
                    section id="coverage" {
                        h2 { "Coverage" }
                        @if unseen.is_empty() && scan.unjudged.is_empty() {
                            p.hint { "Every account × Region was scanned and every resource found was judged." }
                        } @else {
                            p.hint { "Not seen, or not fully: no verdict is given for what is listed here." }
                            div.scroll { table id="coverage-table" {
                                thead { tr { th { "Account" } th { "Region" } th { "Status" } th { "Why" } } }
                                tbody {
                                    @for c in &unseen {
                                        tr data-account=(c.account) data-status=(c.status.as_str()) {
                                            td.mono { (c.account) } td { (c.region) }
                                            td { span class={ "cov " (c.status.as_str()) } { (c.status.as_str()) } }
                                            td.annotation { (c.reason.as_deref().unwrap_or("")) }
                                        }
                                    }
                                    @for u in &scan.unjudged {
                                        tr data-account=(u.account) data-status="unjudged" {
                                            td.mono { (u.account) } td { (u.region) }
                                            td { span.cov.partial { "unjudged" } }
                                            td.annotation { (u.resource_type) " " (u.resource_id) ": " (u.reason) }
                                        }
                                    }
                                }
                            } }
                        }
                    }
                    section id="summary" {
                        h2 { "Accounts × services" }
                        p.hint { "Non-compliant / resources, per account and service; worst first." }
                        div.scroll { table.sortable.matrix id="matrix" {
                            thead { tr {
                                th { "Account" } @for (name, _) in SERVICES { th { (name) } } th { "Non-compliant" } th { "Coverage" }
                            } }
                            tbody {
                                @for a in &views {
                                    tr data-account=(a.id) {
                                        td.mono { a href={ "#account-" (a.id) } { (a.id) } }
                                        @for (b, n) in a.per_service {
                                            td.cell data-sort=(b) { @if b > 0 { span.bad { (b) } } @else { (b) } " / " (n) }
                                        }
                                        td.num { (a.bad) }
                                        td { span class={ "cov " (a.coverage.as_str()) } { (a.coverage.as_str()) } }
                                    }
                                }
                            }
                        } }
                    }
                    section id="ages" {
                        h2 { "Key material age" }
                        p.hint {
                            "One bar per key: days since its material was last imported or rotated, against the limit of "
                            (p.max_key_age_days) " days (dashed line), and how many resources in how many accounts use it."
                        }
                        (age_chart(scan, header, p))
                    }
                    section id="keys" {
                        h2 { "Keys" }
                        (keys_table(scan))
                    }
                    section id="resources" {
                        h2 { "Accounts" }
                        input type="radio" name="verdict" id="f-all" checked;
                        label.chip for="f-all" { "All (" (scan.rows.len()) ")" }
                        @for c in [Compliance::NonCompliant, Compliance::Compliant, Compliance::NotApplicable] {
                            input type="radio" name="verdict" id={ "f-" (verdict_class(c)) };
                            label.chip for={ "f-" (verdict_class(c)) } { (c.as_str()) " (" (count(c)) ")" }
                        }
                        input id="search" type="search" placeholder="Filter by any text…" aria-label="Filter resources" hidden;
                        div.groups {
                            @for (i, a) in views.iter().enumerate() {
                                details.account id={ "account-" (a.id) } open[i == 0 && (a.bad > 0 || a.coverage != CoverageStatus::Scanned)] {
                                    summary {
                                        "Account " (a.id) " · " (a.rows.len()) " resources · " (a.bad) " non-compliant"
                                        span class={ "cov " (a.coverage.as_str()) } { (a.coverage.as_str()) }
                                    }
                                    @for r in &a.reasons { p.hint { (r) } }
                                    @if !a.rows.is_empty() {
                                        div.scroll { table.sortable.resources {
                                            thead { tr {
                                                th { "Region" } th { "Type" } th { "Resource" } th { "Key" } th { "Age" } th { "Verdict" } th { "Annotation" }
                                            } }
                                            tbody {
                                                @for r in &a.rows {
                                                    tr data-verdict=(r.compliance.as_str()) data-resource=(r.resource_name) {
                                                        td { (r.region) }
                                                        td { (r.resource_type.trim_start_matches("AWS::")) }
                                                        td.name title=(r.resource_id) { (r.resource_name) }
                                                        td title=(r.key_arn.as_deref().or(r.key_reference.as_deref()).unwrap_or("—")) {
                                                            (r.key_alias.as_deref().or(r.key_reference.as_deref()).unwrap_or("—"))
                                                        }
                                                        td.num data-sort=(r.key_age_days.unwrap_or(-1)) { @if let Some(d) = r.key_age_days { (d) "d" } @else { "—" } }
                                                        td data-sort=(severity(r.compliance)) { (badge(r.compliance)) }
                                                        td.annotation { (r.annotation) }
                                                    }
                                                }
                                            }
                                        } }
                                    }
                                }
                            }
                        }
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
                        code { "kms-rotation-guard scan --accounts … --regions " (header.regions.join(",")) " --format json --now " (now_arg) }
                        " over the same estate and parameters. To check a JSON export against this page: "
                        code { "sha256sum export.json" } "."
                    }
                    @if embedded {
                        details {
                            summary { "JSON payload" }
                            pre id="payload" { (payload) }
                        }
                    } @else {
                        p id="payload-file" {
                            "Too large to embed (" (payload.len() / 1024) " KiB): written next to this page as "
                            code { (json_file_name) } "; its SHA-256 is the one above."
                        }
                    }
                    p.hint { "Generated by kms-rotation-guard " (env!("CARGO_PKG_VERSION")) " · self-contained: no network, scripts, fonts or images are loaded." }
                }
                script { (PreEscaped(JS)) }
            }
        }
    };
    Page { html: page.into_string(), json: payload, embedded }
}
