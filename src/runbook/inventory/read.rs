//! The AWS reads of the inventory: ListKeys and ListAliases per Region, each key once
//! through the evaluators' own lookup (`key::lookup::KeyReader`), its tags where the lookup
//! skipped them, and the HSM custody check. What it reads goes to the pure [`super::entry`];
//! it decides nothing itself.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::{entry, Inventory, InventoryPolicy};
use crate::aws::Aws;
use crate::key::lookup::KeyReader;
use crate::key::{Fact, Home, KeyLookup, KeyManager, KeyRef};
use crate::params::RuleParams;
use crate::rotation::hsm::KeyMaterialSource;
use crate::rotation::Rotator;
use crate::runbook::usage::ResourceUsage;
use crate::runbook::{aws_err, RunbookError};

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
    let rank = crate::runbook::campaign::DEFAULT_ORDER.iter().position(|d| *d == e).unwrap_or(usize::MAX);
    (rank, e)
}

async fn key_tags(aws: &Aws, key_arn: &str) -> Result<BTreeMap<String, String>, RunbookError> {
    crate::aws::key_tags(aws.kms(), key_arn).await.map_err(aws_err("kms:ListResourceTags"))
}
