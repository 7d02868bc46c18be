//! The auditor's report: one self-contained HTML page (no network, no external scripts,
//! fonts or images) that can be attached to an audit ticket.
//!
//! Everything on the page is derived from the audit rows plus the scan's header, and the
//! rows' JSON export (`super::json`) is embedded verbatim with its SHA-256, so that a copy
//! can be checked against the JSON export. Every value from AWS goes through maud's
//! escaping; the only unescaped text is this module's own CSS and script.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::AuditRow;
use crate::params::RuleParams;
use crate::verdict::Compliance;

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
        if let Some(d) = self.first.key_age_days {
            return Some((d, "tag"));
        }
        let kms = NaiveDate::parse_from_str(self.first.kms_rotation_date.as_deref()?, "%Y-%m-%d").ok()?;
        Some(((now.date_naive() - kms).num_days().max(0), "KMS"))
    }

    fn label(&self) -> String {
        match self.aliases.iter().next() {
            Some(a) => a.to_string(),
            None => short_key(&self.id),
        }
    }
}

fn severity(c: Compliance) -> u8 {
    match c {
        Compliance::NonCompliant => 2,
        Compliance::Compliant => 1,
        Compliance::NotApplicable => 0,
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

fn verdict_class(c: Compliance) -> &'static str {
    match c {
        Compliance::Compliant => "ok",
        Compliance::NonCompliant => "bad",
        Compliance::NotApplicable => "na",
    }
}

fn badge(c: Compliance) -> Markup {
    html! { span class={ "badge " (verdict_class(c)) } { (c.as_str()) } }
}

fn dash(v: Option<&str>) -> &str {
    v.unwrap_or("—")
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
                            div.card.bad { span.n id="count-NON_COMPLIANT" { (bad) } span.l { "NON_COMPLIANT" } }
                            div.card.ok { span.n id="count-COMPLIANT" { (ok) } span.l { "COMPLIANT" } }
                            div.card.na { span.n id="count-NOT_APPLICABLE" { (na) } span.l { "NOT_APPLICABLE" } }
                            div.card.keys { span.n { (keys.len()) } span.l { "KMS keys" } }
                        }
                        dl.meta {
                            dt { "Accounts scanned" } dd { (header.accounts.join(", ")) }
                            dt { "Key accounts" } dd { @if key_accounts.is_empty() { "—" } @else { (key_accounts.into_iter().collect::<Vec<_>>().join(", ")) } }
                            dt { "Region" } dd { (header.region) }
                            dt { "Scan time" } dd { time datetime=(header.now_arg()) { (scan_time) } }
                            dt { "Rule parameters" }
                            dd.params {
                                code { "maxKeyAgeDays=" (p.max_key_age_days) } " "
                                code { "rotationTagKey=" (p.rotation_tag_key) } " "
                                code { "keyReaderRoleName=" (dash(p.key_reader_role_name.as_deref())) } " "
                                code { "allowAwsManagedKeys=" (p.allow_aws_managed_keys) } " "
                                code { "verifyTagAgainstKms=" (p.verify_tag_against_kms) } " "
                                code { "expiryWarningDays=" (p.expiry_warning_days) }
                            }
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

const BAR_H: u32 = 30;

fn age_chart(keys: &[KeyView], header: &ReportHeader) -> Markup {
    let limit = header.params.max_key_age_days.max(1);
    let mut bars: Vec<(&KeyView, Option<(i64, &str)>)> = keys.iter().map(|k| (k, k.age(header.scan_time))).collect();
    // Worst first, then oldest: the stale keys head the picture.
    bars.sort_by_key(|(k, age)| {
        (std::cmp::Reverse(severity(k.verdict)), std::cmp::Reverse(age.map_or(i64::MAX, |a| a.0)))
    });
    let oldest = bars.iter().filter_map(|(_, a)| a.map(|a| a.0)).max().unwrap_or(0);
    let scale_max = (limit as f64 * 1.25).max(oldest as f64 * 1.05);
    let (x0, width) = (230.0, 470.0);
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
                    g.bar data-key=(k.id) data-verdict=(k.verdict.as_str()) {
                        title { (k.label()) " — " (k.id) " — " (k.verdict.as_str()) }
                        text.label x=(x0 - 10.0) y=(y + 15) text-anchor="end" { (truncate(&k.label(), 30)) }
                        @match age {
                            Some((days, source)) => {
                                rect class={ "fill " (verdict_class(k.verdict)) } x=(x0) y=(y + 3) rx="3"
                                    width=(format!("{:.1}", (x(*days as f64) - x0).max(2.0))) height=(BAR_H - 10) {}
                                text.value x=(x(*days as f64) + 6.0) y=(y + 15) {
                                    (days) "d"
                                    @if *source == "KMS" { " per KMS (no valid rotation tag)" }
                                }
                            }
                            None => {
                                rect.unknown x=(x0) y=(y + 3) rx="3" width=(width) height=(BAR_H - 10) {}
                                text.value x=(x0 + 8.0) y=(y + 15) { "age unknown: no rotation date" }
                            }
                        }
                        @let due = due_text(k, header.scan_time);
                        text class={ "due" @if due.starts_with("overdue") { " overdue" } } x="950" y=(y + 15) text-anchor="end" { (due) }
                    }
                }
                line.limit x1=(limit_x) x2=(limit_x) y1="26" y2=(height - 6) {}
                text.limit x=(limit_x) y="9" text-anchor="middle" { "max " (limit) "d" }
            }
        }
    }
}

fn due_text(k: &KeyView, now: DateTime<Utc>) -> String {
    match k.first.next_rotation_due.as_deref() {
        Some(due) => match NaiveDate::parse_from_str(due, "%Y-%m-%d") {
            Ok(d) if d < now.date_naive() => format!("overdue since {due}"),
            _ => format!("next due {due}"),
        },
        None => "next due: unknown".into(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

fn keys_table(keys: &[KeyView]) -> Markup {
    html! {
        @if keys.is_empty() {
            p.empty { "No resource uses a KMS key." }
        } @else {
            div.scroll {
                table.sortable id="keys-table" {
                    thead { tr {
                        th { "Key (aliases, ARN)" } th { "Origin" } th { "State" }
                        th title="The rotation tag's date" { "Rotated (tag)" }
                        th title="The newest date KMS records material taking effect" { "Rotated (KMS)" }
                        th { "Next due" } th { "Current KeyMaterialId" } th { "Material expiry" }
                        th title="Whether the customer's HSM holds the current key material" { "HSM holds material" }
                        th { "Resources" } th { "Verdict" }
                    } }
                    tbody {
                        @for k in keys {
                            @let r = k.first;
                            tr data-key=(k.id) data-verdict=(k.verdict.as_str()) {
                                td.key data-sort=(k.label()) {
                                    @for a in &k.aliases { div.alias { (a) } }
                                    div.arn {
                                        // Break the ARN before the key id, not anywhere.
                                        @match k.id.rsplit_once(':') {
                                            Some((head, tail)) => { (head) ":" wbr; (tail) }
                                            None => (k.id),
                                        }
                                    }
                                }
                                td { (dash(r.origin.as_deref())) }
                                td { (dash(r.key_state.as_deref())) }
                                td.date { (dash(r.rotation_date.as_deref())) }
                                td.date { (dash(r.kms_rotation_date.as_deref())) }
                                td.date { (dash(r.next_rotation_due.as_deref())) }
                                @match &r.key_material_id {
                                    Some(id) => td.mono.wrap { (id) },
                                    None => td { "—" },
                                }
                                td {
                                    @match (&r.expiration_model, &r.material_valid_to) {
                                        (_, Some(t)) => (t),
                                        (Some(m), None) if m == "KEY_MATERIAL_DOES_NOT_EXPIRE" => "never",
                                        (Some(m), None) => (m),
                                        (None, None) => "—",
                                    }
                                }
                                td {
                                    @match r.hsm_holds_material {
                                        Some(true) => span.custody.ok { "held" },
                                        Some(false) => span.custody.bad title="KMS is the only holder of this material: once it expires or is deleted, its ciphertext cannot be decrypted again" { "NOT HELD" },
                                        None => span.custody.na { "unknown" },
                                    }
                                }
                                td.num { (k.resources) }
                                td data-sort=(severity(k.verdict)) { (badge(k.verdict)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn resources(rows: &[AuditRow], keys: &[KeyView]) -> Markup {
    // A resource that names its key by id still shows the alias other resources use.
    let label: BTreeMap<&str, String> = keys.iter().map(|k| (k.id.as_str(), k.label())).collect();
    let mut groups: BTreeMap<(&str, &str), Vec<&AuditRow>> = BTreeMap::new();
    for r in rows {
        groups.entry((&r.account, &r.resource_type)).or_default().push(r);
    }
    // Without JS this is the order a reader gets: problems first.
    for g in groups.values_mut() {
        g.sort_by_key(|r| (std::cmp::Reverse(severity(r.compliance)), r.resource_name.as_str()));
    }
    html! {
        // Filtering works without JS (radio buttons and CSS); the text search needs JS and
        // stays hidden without it.
        input type="radio" name="verdict" id="f-all" checked;
        label.chip for="f-all" { "All (" (rows.len()) ")" }
        @for c in [Compliance::NonCompliant, Compliance::Compliant, Compliance::NotApplicable] {
            input type="radio" name="verdict" id={ "f-" (verdict_class(c)) };
            label.chip for={ "f-" (verdict_class(c)) } { (c.as_str()) " (" (rows.iter().filter(|r| r.compliance == c).count()) ")" }
        }
        input id="search" type="search" placeholder="Filter by any text…" aria-label="Filter resources" hidden;
        div.groups {
            @if rows.is_empty() { p.empty { "No resources found." } }
            @for ((account, service), group) in &groups {
                div.group {
                    h3 { "Account " (account) " · " (service.trim_start_matches("AWS::").replace("::", " ")) span.count { (group.len()) } }
                    div.scroll {
                        table.sortable.resources {
                            colgroup {
                                col style="width:19%"; col style="width:17%"; col style="width:15%";
                                col style="width:6%"; col style="width:12%"; col style="width:31%";
                            }
                            thead { tr {
                                th { "Resource" } th { "Resource ID" } th { "Key" } th { "Age" } th { "Verdict" } th { "Annotation" }
                            } }
                            tbody {
                                @for r in group {
                                    tr data-verdict=(r.compliance.as_str()) data-resource=(r.resource_name) {
                                        td.name { (r.resource_name) }
                                        td.mono.wrap { (r.resource_id) }
                                        td title=(dash(r.key_arn.as_deref().or(r.key_reference.as_deref()))) {
                                            (r.key_alias.clone()
                                                .or_else(|| r.key_arn.as_deref().and_then(|a| label.get(a).cloned()))
                                                .or_else(|| r.key_reference.as_deref().map(short_key))
                                                .unwrap_or_else(|| "—".into()))
                                        }
                                        td.num data-sort=(r.key_age_days.unwrap_or(-1)) { @if let Some(d) = r.key_age_days { (d) "d" } @else { "—" } }
                                        td data-sort=(severity(r.compliance)) { (badge(r.compliance)) }
                                        td.annotation { (r.annotation) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) const CSS: &str = r#"
:root{--ok:#1e7b34;--ok-bg:#e6f4ea;--bad:#b3261e;--bad-bg:#fce8e6;--na:#6b7280;--na-bg:#eef0f3;--ink:#1f2933;--muted:#5f6b7a;--line:#dde2e8;--accent:#1d3557}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#f6f7f9}
header.top{display:flex;justify-content:space-between;align-items:center;gap:24px;padding:22px 36px;background:var(--accent);color:#fff}
header.top h1{margin:0;font-size:22px;font-weight:600;letter-spacing:.2px}
header.top .sub{margin:4px 0 0;color:#cfd8e3}
.overall{padding:10px 18px;border-radius:6px;font-weight:700;font-size:16px;white-space:nowrap}
.overall.bad{background:var(--bad);color:#fff}.overall.ok{background:var(--ok);color:#fff}
main{padding:8px 36px 0}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:18px 22px;margin:18px 0}
h2{font-size:17px;margin:0 0 10px;color:var(--accent)}
h3{font-size:14px;margin:18px 0 8px;color:var(--ink)}
h3 .count{margin-left:8px;padding:1px 8px;border-radius:10px;background:var(--na-bg);color:var(--muted);font-weight:500}
.summary{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.cards{display:flex;gap:12px}
.card{min-width:128px;padding:12px 16px;border-radius:8px;border:1px solid var(--line);display:flex;flex-direction:column}
.card .n{font-size:30px;font-weight:700;line-height:1.1}.card .l{font-size:11px;letter-spacing:.5px;color:var(--muted)}
.card.bad{background:var(--bad-bg);border-color:#f3c1bc}.card.bad .n{color:var(--bad)}
.card.ok{background:var(--ok-bg);border-color:#b9dfc4}.card.ok .n{color:var(--ok)}
.card.na{background:var(--na-bg)}.card.na .n{color:var(--na)}.card.keys .n{color:var(--accent)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0;flex:1;min-width:420px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.params code{display:inline-block;margin:0 4px 3px 0}
code,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:12px}
code{background:#f1f3f6;padding:1px 5px;border-radius:4px}
.hint{color:var(--muted);margin:0 0 10px}
.chart{width:100%;max-width:1100px;height:auto;font-size:12px}
.chart .grid{stroke:#edf0f3}.chart .axis{fill:#8a94a3;font-size:11px}
.chart .label{fill:var(--ink);font-weight:500}.chart .value{fill:var(--ink)}.chart .due{fill:var(--muted)}.chart .due.overdue{fill:var(--bad);font-weight:600}
.chart .fill.ok{fill:var(--ok)}.chart .fill.bad{fill:var(--bad)}.chart .fill.na{fill:var(--na)}
.chart .unknown{fill:#fff;stroke:var(--bad);stroke-dasharray:4 3}
.chart line.limit{stroke:var(--ink);stroke-width:1.5;stroke-dasharray:5 4}.chart text.limit{fill:var(--ink);font-weight:600;font-size:11px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:7px 9px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc;user-select:none}
table.resources{table-layout:fixed}td.name{word-break:break-word}td.date{white-space:nowrap}
table.js th{cursor:pointer}table.js th:after{content:" ↕";color:#c2c9d2}
th[data-dir=asc]:after{content:" ↑"!important;color:var(--ink)!important}th[data-dir=desc]:after{content:" ↓"!important;color:var(--ink)!important}
tbody tr:hover{background:#f8fafc}
td.num{text-align:right;white-space:nowrap}td.name{font-weight:600}
td.wrap{word-break:break-all;max-width:340px}
td.key{min-width:250px}td.key .alias{font-weight:600}td.key .arn{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:11px;color:var(--muted)}td.annotation{max-width:520px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:11px;font-weight:700;letter-spacing:.3px;white-space:nowrap}
.badge.ok{background:var(--ok-bg);color:var(--ok)}.badge.bad{background:var(--bad-bg);color:var(--bad)}.badge.na{background:var(--na-bg);color:var(--na)}
.custody.ok{color:var(--ok);font-weight:600}.custody.bad{color:var(--bad);font-weight:600}.custody.na{color:var(--muted)}
input[name=verdict]{position:absolute;opacity:0}
.chip{display:inline-block;margin:0 6px 8px 0;padding:4px 12px;border:1px solid var(--line);border-radius:16px;cursor:pointer;font-size:12px;background:#fff}
input[name=verdict]:checked+.chip{background:var(--accent);border-color:var(--accent);color:#fff}
input[name=verdict]:focus-visible+.chip{outline:2px solid var(--accent);outline-offset:2px}
#search{margin:0 0 8px 8px;padding:5px 10px;border:1px solid var(--line);border-radius:16px;min-width:240px;font:inherit}
#f-bad:checked~.groups tr[data-verdict]:not([data-verdict=NON_COMPLIANT]),
#f-ok:checked~.groups tr[data-verdict]:not([data-verdict=COMPLIANT]),
#f-na:checked~.groups tr[data-verdict]:not([data-verdict=NOT_APPLICABLE]){display:none}
#f-bad:checked~.groups .group:not(:has(tr[data-verdict=NON_COMPLIANT])),
#f-ok:checked~.groups .group:not(:has(tr[data-verdict=COMPLIANT])),
#f-na:checked~.groups .group:not(:has(tr[data-verdict=NOT_APPLICABLE])){display:none}
footer{margin:18px 36px 30px;padding:18px 22px;border:1px solid var(--line);border-radius:8px;background:#fff}
footer .digest{font-size:13px;word-break:break-all}
pre#payload{max-height:360px;overflow:auto;background:#f6f8fa;padding:10px;border-radius:6px;font-size:11px}
.empty{color:var(--muted)}
@media print{body{background:#fff}section,footer{break-inside:avoid;border-color:#bbb}details{display:none}#search,.chip,input[name=verdict]{display:none}}
"#;

/// Sorting by column and text search. Without JS the tables keep their order (grouped by
/// account and service) and the verdict filter still works.
const JS: &str = r#"
(function(){
var q=document.getElementById('search');q.hidden=false;
q.addEventListener('input',function(){var t=q.value.toLowerCase();document.querySelectorAll('.resources tbody tr').forEach(function(r){r.style.display=r.textContent.toLowerCase().indexOf(t)<0?'none':''})});
document.querySelectorAll('table.sortable').forEach(function(tb){tb.classList.add('js');tb.querySelectorAll('th').forEach(function(th,i){th.tabIndex=0;th.addEventListener('click',function(){
var d=th.dataset.dir==='asc'?'desc':'asc',b=tb.tBodies[0],v=function(r){var c=r.cells[i];return c.dataset.sort!==undefined?c.dataset.sort:c.textContent.trim()};
tb.querySelectorAll('th').forEach(function(h){delete h.dataset.dir});th.dataset.dir=d;
Array.prototype.slice.call(b.rows).sort(function(x,y){return (d==='asc'?1:-1)*v(x).localeCompare(v(y),undefined,{numeric:true})}).forEach(function(r){b.appendChild(r)})})})});
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::row;

    fn header() -> ReportHeader {
        ReportHeader::new(vec!["111122223333".into()], "eu-west-1", Utc::now(), &RuleParams::default())
    }

    #[test]
    fn values_from_aws_never_become_markup() {
        let mut hostile = row("KMS key alias/x: tag LastRotationDate=\"<script>alert(1)</script>\" is not a date");
        hostile.resource_name = "<img src=x onerror=alert(2)>".into();
        hostile.key_alias = Some("alias/\"><svg onload=alert(3)>".into());
        let page = render(&header(), &[hostile]);
        for raw in ["<script>alert", "<img src", "<svg onload"] {
            assert!(!page.contains(raw), "{raw} reached the page unescaped");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;"));
        // Only this module's own script element.
        assert_eq!(page.matches("<script").count(), 1);
    }

    #[test]
    fn embeds_the_json_payload_and_its_digest() {
        let rows = [row("a"), row("b & <c>")];
        let page = render(&header(), &rows);
        let digest = crate::audit::sha256_hex(crate::audit::json(&rows).as_bytes());
        assert!(page.contains(&format!("id=\"payload-sha256\">{digest}<")), "digest missing");
        let start = page.find("<pre id=\"payload\">").unwrap() + "<pre id=\"payload\">".len();
        let end = start + page[start..].find("</pre>").unwrap();
        let unescaped =
            page[start..end].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
        assert_eq!(crate::audit::sha256_hex(unescaped.as_bytes()), digest);
    }

    #[test]
    fn custody_shows_held_not_held_and_unknown() {
        let on = |key: &str, held: Option<bool>| AuditRow {
            key_arn: Some(format!("arn:aws:kms:eu-west-1:111122223333:key/{key}")),
            hsm_holds_material: held,
            ..row("a")
        };
        let rows = [on("k1", Some(true)), on("k2", None), on("k3", Some(false))];
        let page = render(&header(), &rows);
        let cell = |key: &str| {
            let start = page.find(&format!("<tr data-key=\"arn:aws:kms:eu-west-1:111122223333:key/{key}\"")).unwrap();
            let end = start + page[start..].find("</tr>").unwrap();
            page[start..end].to_string()
        };
        assert!(cell("k1").contains(r#"<span class="custody ok">held</span>"#), "{}", cell("k1"));
        assert!(cell("k2").contains(r#"<span class="custody na">unknown</span>"#), "{}", cell("k2"));
        assert!(cell("k3").contains(">NOT HELD</span>") && cell("k3").contains("custody bad"), "{}", cell("k3"));
        // The JSON row the page's digest covers says the same.
        assert!(crate::audit::json(&rows[2..]).contains(r#""hsmHoldsMaterial": false"#));
    }

    #[test]
    fn one_bar_per_key_coloured_by_its_worst_verdict() {
        let mut a = row("stale");
        a.key_arn = Some("arn:aws:kms:eu-west-1:111122223333:key/k1".into());
        let mut b = a.clone();
        b.compliance = Compliance::Compliant;
        let mut c = row("fresh");
        c.key_arn = Some("arn:aws:kms:eu-west-1:111122223333:key/k2".into());
        c.compliance = Compliance::Compliant;
        c.key_age_days = Some(10);
        let page = render(&header(), &[a, b, c]);
        assert_eq!(page.matches("<g class=\"bar\"").count(), 2);
        assert!(page.contains(r#"data-key="arn:aws:kms:eu-west-1:111122223333:key/k1" data-verdict="NON_COMPLIANT""#));
        assert!(page.contains(r#"data-key="arn:aws:kms:eu-west-1:111122223333:key/k2" data-verdict="COMPLIANT""#));
        assert!(page.contains("next due 2027-01-01"));
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        let page = render(&header(), &[row("a")]);
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!page.contains(external), "{external} in the page");
        }
    }
}
