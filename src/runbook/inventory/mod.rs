//! `keys`: every KMS key of the security account in the given Regions, with what the
//! runbook needs to know about it, and what it points out (unused, unguarded imported,
//! custom key store, few rotations left, material expiring, material the HSM lacks).
//!
//! Each key is read once, with the evaluators' own lookup (`key::lookup::KeyReader`);
//! the aliases come from one ListAliases per Region. [`entry`] is pure: facts, aliases,
//! the scan's usage, custody and the clock give one [`KeyEntry`].

mod read;

pub(crate) use read::list;
pub use read::read;

use chrono::{DateTime, Duration, Utc};
use maud::{html, PreEscaped, DOCTYPE};

use super::usage::ResourceUsage;
use super::{ENVIRONMENT_TAG, GUARD_TAG};
use crate::key::{Fact, KeyFacts, KeyManager};
use crate::params::RuleParams;
use crate::rotation::ON_DEMAND_QUOTA;

/// Tag names read as the key's service, first found wins.
pub const SERVICE_TAGS: [&str; 3] = ["Service", "service", "Application"];

/// What the inventory judges by.
#[derive(Debug, Clone)]
pub struct InventoryPolicy {
    /// The rotation date tag and the expiry warning window.
    pub params: RuleParams,
    /// Fewer on-demand rotations left than this is pointed out (the security account's
    /// `minRotationsLeft`, default 5).
    pub min_rotations_left: u32,
}

impl Default for InventoryPolicy {
    fn default() -> Self {
        InventoryPolicy { params: RuleParams::default(), min_rotations_left: 5 }
    }
}

/// A resource on a key (from the scan).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUser {
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
}

/// One key as the inventory shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyEntry {
    pub region: String,
    pub key_arn: String,
    pub aliases: Vec<String>,
    pub origin: String,
    pub state: String,
    /// CUSTOMER or AWS.
    pub manager: String,
    pub environment: Option<String>,
    pub service: Option<String>,
    /// The guard tag's value (`kms-rotation-guard`), if any.
    pub guard: Option<String>,
    /// When the current material took effect (tag or KMS, the newest either vouches for).
    pub material_date: Option<String>,
    pub material_age_days: Option<i64>,
    /// The earliest expiry of ANY of the key's materials (KMS Developer Guide: the expiry of
    /// any material makes the whole key unusable), and that material's id when known.
    pub earliest_expiry: Option<String>,
    pub expiring_material_id: Option<String>,
    /// On-demand rotations left of 25; `None` where KMS's history was not readable.
    pub rotations_left: Option<u32>,
    pub custom_key_store: bool,
    /// Whether the HSM holds the current material; `None`: not asked or unknown.
    pub hsm_holds_current: Option<bool>,
    /// The resources using the key, when a scan was given; `None`: no scan.
    pub resources: Option<Vec<KeyUser>>,
    /// What the runbook should look at, in words.
    pub findings: Vec<String>,
    /// What could not be read about this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// The inventory: every key, and what could not be read.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub account: String,
    pub regions: Vec<String>,
    pub generated: DateTime<Utc>,
    /// Where the resource usage came from (`--resources FILE` or the organization scan).
    pub resources_from: Option<String>,
    pub keys: Vec<KeyEntry>,
    /// Regions or keys that could not be read, and why: the inventory is incomplete.
    pub unread: Vec<String>,
    /// What the scan could not see (its coverage gaps).
    pub scan_blind_spots: Vec<String>,
}

impl Inventory {
    pub fn findings(&self) -> usize {
        self.keys.iter().map(|k| k.findings.len()).sum()
    }
    pub fn complete(&self) -> bool {
        self.unread.is_empty() && self.keys.iter().all(|k| k.unread.is_none())
    }
}

/// The newest date the key's material is known to be from: KMS's own record, and the
/// rotation tag unless it is in the future (beyond a day's tolerance).
pub fn material_date(facts: &KeyFacts, tag_key: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tag = match &facts.tags {
        Fact::Known(t) => t.get(tag_key).and_then(|raw| crate::verdict::parse_rotation_date(raw)),
        _ => None,
    }
    .filter(|t| *t <= now + Duration::days(1));
    facts.newest_material_date().max(tag)
}

/// The earliest expiry among every material: `KeyFacts::earliest_expiry`, the rule's own
/// reading (DescribeKey ValidTo and every permanently associated material listed).
pub fn earliest_expiry(facts: &KeyFacts) -> Option<(DateTime<Utc>, Option<String>)> {
    match facts.earliest_expiry() {
        crate::key::facts::Expiry::On { material, valid_to } => Some((valid_to, material)),
        _ => None,
    }
}

/// On-demand rotations left: imported material rotates only on demand, and every dated
/// entry of its rotation list is one such rotation (the first import has no date).
pub fn rotations_left(facts: &KeyFacts) -> Option<u32> {
    if facts.origin != "EXTERNAL" {
        return None;
    }
    match &facts.rotations {
        Fact::Known(rs) => {
            let used = rs.iter().filter(|r| r.date.is_some()).count() as u32;
            Some(ON_DEMAND_QUOTA.saturating_sub(used))
        }
        _ => None,
    }
}

/// Pure: one key's entry.
pub fn entry(
    region: &str,
    facts: &KeyFacts,
    aliases: &[String],
    usage: Option<&ResourceUsage>,
    held: Option<bool>,
    policy: &InventoryPolicy,
    now: DateTime<Utc>,
) -> KeyEntry {
    let tags = match &facts.tags {
        Fact::Known(t) => Some(t),
        _ => None,
    };
    let tag = |k: &str| tags.and_then(|t| t.get(k).cloned());
    let date = material_date(facts, &policy.params.rotation_tag_key, now);
    let expiry = earliest_expiry(facts);
    let left = rotations_left(facts);
    let resources = usage.map(|u| {
        u.users_of(&facts.key_arn)
            .into_iter()
            .map(|r| KeyUser {
                account: r.account.clone(),
                region: r.region.clone(),
                resource_type: r.resource_type.clone(),
                resource_id: r.resource_id.clone(),
            })
            .collect::<Vec<_>>()
    });
    let customer = facts.manager == KeyManager::Customer;
    let mut findings = Vec::new();
    if customer && facts.state == "Enabled" && resources.as_ref().is_some_and(Vec::is_empty) {
        findings.push("no resource uses it (per the scan)".to_string());
    }
    if facts.origin == "EXTERNAL" && tags.is_some_and(|t| !t.contains_key(GUARD_TAG)) {
        findings.push(format!("imported key without the guard tag {GUARD_TAG}: no automation may rotate it"));
    }
    if let Some(age) = date.map(|d| now.signed_duration_since(d).num_days()) {
        if customer && facts.origin == "EXTERNAL" && age > policy.params.max_key_age_days {
            findings.push(format!(
                "material is {age} days old, over maxKeyAgeDays {}: due for rotation (campaign plan)",
                policy.params.max_key_age_days
            ));
        }
    }
    if facts.in_custom_key_store() {
        findings.push(format!("in a custom key store ({}): KMS cannot rotate it", facts.origin));
    }
    if let Some(n) = left.filter(|n| *n < policy.min_rotations_left) {
        findings.push(format!(
            "only {n} of {ON_DEMAND_QUOTA} on-demand rotations left (below {}): plan an alias-swap or a new key",
            policy.min_rotations_left
        ));
    }
    if let Some((at, material)) = &expiry {
        let days = at.signed_duration_since(now).num_days();
        if days <= policy.params.expiry_warning_days {
            findings.push(format!(
                "key material {} expires on {} (in {} days): re-import it from the HSM \
                 (kms-rotation-guard reimport --key {})",
                material.as_deref().unwrap_or("(id unknown)"),
                at.format("%Y-%m-%d"),
                days.max(0),
                facts.key_arn
            ));
        }
    }
    if let crate::key::facts::Expiry::DateUnknown { material } = facts.earliest_expiry() {
        findings.push(format!(
            "key material {} expires, and KMS gives no date: check it (kms-rotation-guard materials --key {})",
            material.as_deref().unwrap_or("(id unknown)"),
            facts.key_arn
        ));
    }
    if held == Some(false) {
        findings.push("the HSM does not hold the current key material (NOT HELD): it cannot be imported again".into());
    }
    let unread = match (&facts.tags, customer) {
        (Fact::Denied(d), true) => Some(format!("{} denied: {}", d.action, d.hint)),
        _ => None,
    };
    KeyEntry {
        region: region.to_string(),
        key_arn: facts.key_arn.clone(),
        aliases: aliases.to_vec(),
        origin: facts.origin.clone(),
        state: facts.state.clone(),
        manager: if customer { "CUSTOMER" } else { "AWS" }.into(),
        environment: tag(ENVIRONMENT_TAG),
        service: SERVICE_TAGS.iter().find_map(|k| tag(k)),
        guard: tag(GUARD_TAG),
        material_date: date.map(|d| d.format("%Y-%m-%d").to_string()),
        material_age_days: date.map(|d| now.signed_duration_since(d).num_days().max(0)),
        earliest_expiry: expiry.as_ref().map(|(t, _)| super::stamp(*t)),
        expiring_material_id: expiry.and_then(|(_, m)| m),
        rotations_left: left,
        custom_key_store: facts.in_custom_key_store(),
        hsm_holds_current: held,
        resources,
        findings,
        unread,
    }
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn label(k: &KeyEntry) -> String {
    k.aliases.first().cloned().unwrap_or_else(|| k.key_arn.rsplit('/').next().unwrap_or(&k.key_arn).to_string())
}

/// A plain-text table, one key per line, findings below it.
pub fn table(inv: &Inventory) -> String {
    let header =
        ["KEY", "REGION", "ORIGIN", "STATE", "ENV", "SERVICE", "GUARD", "AGE", "EXPIRES", "LEFT", "HSM", "USERS"];
    let rows: Vec<[String; 12]> = inv
        .keys
        .iter()
        .map(|k| {
            [
                label(k),
                k.region.clone(),
                k.origin.clone(),
                k.state.clone(),
                dash(k.environment.as_deref()),
                dash(k.service.as_deref()),
                dash(k.guard.as_deref()),
                dash(k.material_age_days.map(|d| format!("{d}d"))),
                dash(k.earliest_expiry.as_deref().map(|e| &e[..10])),
                dash(k.rotations_left),
                match k.hsm_holds_current {
                    Some(true) => "held".into(),
                    Some(false) => "NOT HELD".into(),
                    None => "-".into(),
                },
                dash(k.resources.as_ref().map(Vec::len)),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (i, v) in r.iter().enumerate() {
            width[i] = width[i].max(v.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, v) in cells.iter().enumerate() {
            s.push_str(v);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(width[i] - v.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for (k, r) in inv.keys.iter().zip(&rows) {
        out.push_str(&line(r));
        for f in &k.findings {
            out.push_str(&format!("    ! {f}\n"));
        }
        if let Some(u) = &k.unread {
            out.push_str(&format!("    ? {u}\n"));
        }
    }
    out.push_str(&format!("\n{} keys, {} findings", inv.keys.len(), inv.findings()));
    match &inv.resources_from {
        Some(from) => out.push_str(&format!("; resources from {from}\n")),
        None => out.push_str("; no scan given (--resources FILE): resource use not shown\n"),
    }
    for u in inv.unread.iter().chain(&inv.scan_blind_spots) {
        out.push_str(&format!("not seen: {u}\n"));
    }
    out
}

pub fn json(inv: &Inventory) -> String {
    serde_json::to_string_pretty(inv).expect("the inventory serialises") + "\n"
}

/// One self-contained page in the audit report's style, with the JSON and its SHA-256.
pub fn html(inv: &Inventory) -> String {
    let payload = json(inv);
    let digest = crate::audit::sha256_hex(payload.as_bytes());
    let findings = inv.findings();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "KMS key inventory · " (inv.account) " · " (inv.generated.format("%Y-%m-%d")) }
                style { (PreEscaped(crate::audit::html::STYLE)) }
            }
            body {
                header.top {
                    div {
                        h1 { "KMS key inventory" }
                        p.sub { "Every KMS key of account " strong { (inv.account) } " in " (inv.regions.join(", ")) ", at " (inv.generated.format("%Y-%m-%d %H:%M:%S UTC")) "." }
                    }
                    @if findings > 0 { div.overall.bad id="overall" { (findings) " findings" } }
                    @else { div.overall.ok id="overall" { "Nothing to look at" } }
                }
                main {
                    section id="keys" {
                        h2 { "Keys" }
                        div.scroll { table id="inventory" {
                            thead { tr {
                                th { "Key (aliases, ARN)" } th { "Region" } th { "Origin" } th { "State" } th { "Environment" }
                                th { "Service" } th { "Guard" } th { "Material age" } th { "Earliest expiry (any material)" }
                                th { "Rotations left" } th { "HSM holds current" } th { "Resources" } th { "Findings" }
                            } }
                            tbody { @for k in &inv.keys {
                                tr data-key=(k.key_arn) {
                                    td.key { @for a in &k.aliases { div.alias { (a) } } div.arn { (k.key_arn) } }
                                    td { (k.region) } td { (k.origin) } td { (k.state) }
                                    td { (dash(k.environment.as_deref())) } td { (dash(k.service.as_deref())) } td { (dash(k.guard.as_deref())) }
                                    td.num { (dash(k.material_age_days.map(|d| format!("{d} d")))) }
                                    td.date { (dash(k.earliest_expiry.as_deref())) }
                                    td.num { (dash(k.rotations_left)) }
                                    td { @match k.hsm_holds_current {
                                        Some(true) => span.custody.ok { "held" },
                                        Some(false) => span.custody.bad { "NOT HELD" },
                                        None => span.custody.na { "unknown" },
                                    } }
                                    td { @match &k.resources {
                                        None => "—",
                                        Some(rs) => { (rs.len()) @for r in rs { div.arn { (r.account) " " (r.resource_type.trim_start_matches("AWS::")) " " (r.resource_id) } } },
                                    } }
                                    td.annotation { @for f in &k.findings { div { span.badge.bad { "!" } " " (f) } } @if let Some(u) = &k.unread { div { span.badge.na { "?" } " " (u) } } }
                                }
                            } }
                        } }
                        @if !inv.unread.is_empty() || !inv.scan_blind_spots.is_empty() {
                            h3 { "Not seen" }
                            ul { @for u in inv.unread.iter().chain(&inv.scan_blind_spots) { li { (u) } } }
                        }
                    }
                }
                footer id="evidence" {
                    h2 { "Evidence" }
                    p { "SHA-256 of this page's JSON payload: " code.digest id="payload-sha256" { (digest) } }
                    p.hint { "The payload is the exact output of " code { "kms-rotation-guard keys --format json" } " for this run." }
                    details { summary { "JSON payload" } pre id="payload" { (payload) } }
                }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests;
