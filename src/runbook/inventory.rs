//! `keys`: every KMS key of the security account in the given Regions, with what the
//! runbook needs to know about it, and what it points out (unused, unguarded imported,
//! custom key store, few rotations left, material expiring, material the HSM lacks).
//!
//! Each key is read once, with the evaluators' own lookup (`key::lookup::KeyReader`);
//! the aliases come from one ListAliases per Region. [`entry`] is pure: facts, aliases,
//! the scan's usage, custody and the clock give one [`KeyEntry`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use maud::{html, PreEscaped, DOCTYPE};

use super::usage::ResourceUsage;
use super::{aws_err, RunbookError, ENVIRONMENT_TAG, GUARD_TAG};
use crate::aws::Aws;
use crate::key::lookup::KeyReader;
use crate::key::{Fact, Home, KeyFacts, KeyLookup, KeyManager, KeyRef};
use crate::params::RuleParams;
use crate::rotation::hsm::KeyMaterialSource;
use crate::rotation::{Rotator, ON_DEMAND_QUOTA};

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

/// An `Aws` for `region` when it differs from `aws`'s own (same endpoints, counter, credentials).
pub(crate) fn regional(aws: &Aws, region: &str) -> Option<Aws> {
    (region != aws.region()).then(|| aws.in_region(region))
}

/// Every key id of this account in the client's Region (ListKeys), and every alias by key id.
pub(crate) async fn list(aws: &Aws) -> Result<(Vec<String>, HashMap<String, Vec<String>>), RunbookError> {
    let mut keys = Vec::new();
    let mut marker = None;
    loop {
        let out = aws.kms().list_keys().set_marker(marker).send().await.map_err(aws_err("kms:ListKeys"))?;
        keys.extend(out.keys().iter().filter_map(|k| k.key_arn().map(str::to_string)));
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            break;
        }
    }
    let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
    let mut marker = None;
    loop {
        let out = aws.kms().list_aliases().set_marker(marker).send().await.map_err(aws_err("kms:ListAliases"))?;
        for a in out.aliases() {
            if let (Some(name), Some(target)) = (a.alias_name(), a.target_key_id()) {
                aliases.entry(target.to_string()).or_default().push(name.to_string());
            }
        }
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            break;
        }
    }
    Ok((keys, aliases))
}

/// Reads every key of `account` in `regions` once and builds the inventory.
#[allow(clippy::too_many_arguments)]
pub async fn read(
    aws: &Aws,
    account: &str,
    regions: &[String],
    source: Option<&dyn KeyMaterialSource>,
    usage: Option<(&ResourceUsage, String)>,
    policy: &InventoryPolicy,
    now: DateTime<Utc>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Inventory, RunbookError> {
    // Tags and the full rotation list of every key: the reads the evaluators make.
    let params = RuleParams { key_reader_role_name: None, verify_tag_against_kms: true, ..policy.params.clone() };
    let mut inv = Inventory {
        account: account.to_string(),
        regions: regions.to_vec(),
        generated: now,
        resources_from: usage.as_ref().map(|(_, from)| from.clone()),
        keys: Vec::new(),
        unread: Vec::new(),
        scan_blind_spots: usage.as_ref().map(|(u, _)| u.blind_spots.clone()).unwrap_or_default(),
    };
    for region in regions {
        let other = regional(aws, region);
        let aws_r = other.as_ref().unwrap_or(aws);
        progress(&format!("listing keys in {region}"));
        let (keys, aliases) = match list(aws_r).await {
            Ok(l) => l,
            Err(e) => {
                inv.unread.push(format!("{region}: {e}"));
                continue;
            }
        };
        progress(&format!("reading {} keys in {region}", keys.len()));
        let reader = KeyReader::new(aws_r, &params, account);
        let home = Home::new(region.clone(), account.to_string());
        let looked: Vec<(String, Result<std::sync::Arc<KeyLookup>, String>)> =
            futures_util::stream::iter(keys.into_iter().map(|arn| {
                let (reader, home) = (&reader, &home);
                async move {
                    let r = match KeyRef::parse(&arn) {
                        Ok(r) => reader.look_up(&r, home).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    (arn, r)
                }
            }))
            .buffer_unordered(8)
            .collect()
            .await;
        for (arn, result) in looked {
            let facts = match result.as_deref() {
                Ok(KeyLookup::Found(f)) => {
                    let mut f = (**f).clone();
                    // The lookup skips tags of keys it cannot judge (disabled, pending); the
                    // runbook still needs their Environment and guard tags.
                    if f.manager == KeyManager::Customer && matches!(f.tags, Fact::NotRead) {
                        f.tags = match key_tags(aws_r, &f.key_arn).await {
                            Ok(t) => Fact::Known(t),
                            Err(e) => {
                                inv.unread.push(format!("{arn}: tags: {e}"));
                                Fact::NotRead
                            }
                        };
                    }
                    f
                }
                Ok(other) => {
                    inv.unread.push(format!("{arn}: {}", describe_lookup(other)));
                    continue;
                }
                Err(e) => {
                    inv.unread.push(format!("{arn}: {e}"));
                    continue;
                }
            };
            // The existing custody check (the report's): KMS's material list against the HSM.
            let held = match source {
                Some(s) if facts.origin == "EXTERNAL" && facts.state == "Enabled" => {
                    match Rotator::new(aws_r, s).holds_current_material(&facts.key_arn).await {
                        Ok(h) => h,
                        Err(e) => {
                            inv.unread.push(format!("{arn}: custody unknown: {e}"));
                            None
                        }
                    }
                }
                _ => None,
            };
            let names = aliases.get(&facts.key_id).cloned().unwrap_or_default();
            inv.keys.push(entry(region, &facts, &names, usage.as_ref().map(|(u, _)| *u), held, policy, now));
        }
    }
    // Environments in runbook order, then by alias.
    inv.keys.sort_by(|a, b| {
        (env_rank(a.environment.as_deref()), &a.region, a.aliases.first(), &a.key_arn).cmp(&(
            env_rank(b.environment.as_deref()),
            &b.region,
            b.aliases.first(),
            &b.key_arn,
        ))
    });
    Ok(inv)
}

fn describe_lookup(l: &KeyLookup) -> String {
    match l {
        KeyLookup::NotFound => "not found".into(),
        KeyLookup::Denied(d) => format!("{} denied: {}", d.action, d.hint),
        KeyLookup::AwsManagedAlias => "AWS-managed".into(),
        KeyLookup::Found(_) => "found".into(),
    }
}

fn env_rank(env: Option<&str>) -> (usize, String) {
    let e = env.unwrap_or("").to_ascii_lowercase();
    let rank = super::campaign::DEFAULT_ORDER.iter().position(|d| *d == e).unwrap_or(usize::MAX);
    (rank, e)
}

async fn key_tags(aws: &Aws, key_arn: &str) -> Result<BTreeMap<String, String>, RunbookError> {
    let mut tags = BTreeMap::new();
    let mut marker = None;
    loop {
        let out = aws
            .kms()
            .list_resource_tags()
            .key_id(key_arn)
            .set_marker(marker)
            .send()
            .await
            .map_err(aws_err("kms:ListResourceTags"))?;
        tags.extend(out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())));
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok(tags);
        }
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
mod tests {
    use super::*;
    use crate::key::Rotation;

    fn now() -> DateTime<Utc> {
        "2026-12-04T00:00:00Z".parse().unwrap()
    }

    fn external(tags: &[(&str, &str)], dated_rotations: usize) -> KeyFacts {
        let mut f = KeyFacts::new("k1", "111111111111", "EXTERNAL");
        f.tags = Fact::Known(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut rs = vec![Rotation {
            date: None,
            material_id: Some("m0".into()),
            material_state: Some("NON_CURRENT".into()),
            expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
            valid_to: Some(now() + Duration::days(10)),
        }];
        for i in 0..dated_rotations {
            rs.push(Rotation {
                date: Some(now() - Duration::days(40 - i as i64)),
                material_id: Some(format!("m{}", i + 1)),
                material_state: Some(if i + 1 == dated_rotations { "CURRENT" } else { "NON_CURRENT" }.into()),
                expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
                valid_to: None,
            });
        }
        f.rotations = Fact::Known(rs);
        f
    }

    #[test]
    fn points_out_every_finding_the_runbook_names() {
        let usage = ResourceUsage::default();
        let e = entry(
            "eu-west-1",
            &external(&[("Environment", "prod")], 22),
            &[],
            Some(&usage),
            Some(false),
            &InventoryPolicy::default(),
            now(),
        );
        let all = e.findings.join("\n");
        for want in
            ["no resource uses it", "without the guard tag", "only 3 of 25", "m0 expires on 2026-12-14", "NOT HELD"]
        {
            assert!(all.contains(want), "{want} missing: {all}");
        }
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(e.rotations_left, Some(3));
        assert_eq!(e.material_age_days, Some(19));
    }

    #[test]
    fn material_older_than_the_limit_is_due() {
        let f = external(&[("kms-rotation-guard", "enabled"), ("LastRotationDate", "2025-06-01")], 0);
        let mut f = f;
        f.rotations = Fact::Known(vec![]);
        let e = entry("eu-west-1", &f, &[], None, None, &InventoryPolicy::default(), now());
        assert_eq!(e.findings.len(), 1, "{:?}", e.findings);
        assert!(e.findings[0].contains("551 days old, over maxKeyAgeDays 365"), "{:?}", e.findings);
    }

    #[test]
    fn a_guarded_used_healthy_key_has_no_finding() {
        let mut f = external(&[("kms-rotation-guard", "enabled"), ("Environment", "dev"), ("Service", "payments")], 1);
        f.rotations = Fact::Known(vec![]);
        let usage = ResourceUsage {
            rows: vec![super::super::usage::UsageRow {
                account: "2".into(),
                region: "eu-west-1".into(),
                resource_type: "AWS::S3::Bucket".into(),
                resource_id: "b".into(),
                key_arn: Some(f.key_arn.clone()),
                key_reference: None,
            }],
            ..Default::default()
        };
        let e =
            entry("eu-west-1", &f, &["alias/dev".into()], Some(&usage), Some(true), &InventoryPolicy::default(), now());
        assert!(e.findings.is_empty(), "{:?}", e.findings);
        assert_eq!(e.service.as_deref(), Some("payments"));
        assert_eq!(e.resources.unwrap().len(), 1);
        assert_eq!(e.rotations_left, Some(25));
    }

    #[test]
    fn custom_key_store_is_pointed_out_and_values_from_aws_are_escaped_in_html() {
        let mut f = KeyFacts::new("k2", "111111111111", "AWS_CLOUDHSM");
        f.tags = Fact::Known([("Environment".to_string(), "<script>x</script>".to_string())].into());
        let e = entry("eu-west-1", &f, &[], None, None, &InventoryPolicy::default(), now());
        assert!(e.findings.iter().any(|x| x.contains("custom key store")));
        let inv = Inventory {
            account: "111111111111".into(),
            regions: vec!["eu-west-1".into()],
            generated: now(),
            resources_from: None,
            keys: vec![e],
            unread: vec![],
            scan_blind_spots: vec![],
        };
        let page = html(&inv);
        assert!(!page.contains("<script>x"), "AWS values must be escaped");
        assert!(page.contains(&crate::audit::sha256_hex(json(&inv).as_bytes())));
        assert!(table(&inv).contains("custom key store"));
    }
}
