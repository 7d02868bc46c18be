//! The sections of the page: the key-age picture (drawn by `parts`), the keys table and
//! the resources table. Every value from AWS is escaped by maud.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup};

use super::parts::{self, badge, dash, severity, verdict_class, Bar, ACCOUNT_CHART};
use super::{short_key, KeyView, ReportHeader};
use crate::audit::AuditRow;
use crate::verdict::Compliance;

/// The key-age chart of the keys on this page (`parts::age_chart`), each bar saying when
/// its key is due.
pub(super) fn age_chart(keys: &[KeyView], header: &ReportHeader) -> Markup {
    let bars = keys
        .iter()
        .map(|k| {
            let note = due_text(k, header.scan_time);
            Bar {
                key: k.id.clone(),
                label: k.label(),
                verdict: k.verdict,
                age: k.age(header.scan_time),
                overdue: note.starts_with("overdue"),
                note,
                usage: None,
            }
        })
        .collect();
    parts::age_chart(bars, header.params.max_key_age_days, &ACCOUNT_CHART)
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

pub(super) fn keys_table(keys: &[KeyView]) -> Markup {
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

pub(super) fn resources(rows: &[AuditRow], keys: &[KeyView]) -> Markup {
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
