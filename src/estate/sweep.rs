//! The assume-role scan: every account × Region enumerated through the member role, with
//! bounded concurrency; every key read once for the whole estate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::coverage::{reason, CoverageRow, CoverageStatus};
use super::{export, EstateScan, EstateSpec, Progress, Unjudged};
use crate::audit::AuditRow;
use crate::aws::Aws;
use crate::error::Error;
use crate::handler::{self, Assessment};
use crate::key::lookup::KeyReader;
use crate::key::Home;
use crate::params::RuleParams;
use crate::resource::{Protection, Resource, ResourceType};
use crate::verdict::decide;

/// Resources of one unit judged at once (their key lookups share the Region's reader,
/// which bounds the KMS calls itself).
const JUDGE_CONCURRENCY: usize = 64;

/// The resource families, enumerated (and failing) separately: a denial of S3 in one
/// account must not hide its databases.
pub(crate) fn families(types: &[ResourceType]) -> Vec<(&'static str, Vec<ResourceType>)> {
    let rds: Vec<ResourceType> = types
        .iter()
        .copied()
        .filter(|t| matches!(t, ResourceType::RdsDbInstance | ResourceType::RdsDbCluster))
        .collect();
    let mut out = Vec::new();
    if !rds.is_empty() {
        out.push(("RDS", rds));
    }
    if types.contains(&ResourceType::DynamoDbTable) {
        out.push(("DynamoDB", vec![ResourceType::DynamoDbTable]));
    }
    if types.contains(&ResourceType::S3Bucket) {
        out.push(("S3", vec![ResourceType::S3Bucket]));
    }
    out
}

/// What one account × Region gave.
struct Unit {
    rows: Vec<AuditRow>,
    unjudged: Vec<Unjudged>,
    coverage: CoverageRow,
}

/// Scans the estate. Fails only on bad input; whatever an account or Region refuses is a
/// coverage row, whatever key cannot be read an [`Unjudged`] row.
pub async fn scan(
    aws: &Aws,
    spec: &EstateSpec,
    params: &RuleParams,
    now: DateTime<Utc>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<EstateScan, Error> {
    if spec.accounts.is_empty() || spec.regions.is_empty() {
        return Err(Error::InvalidParameter {
            name: "accounts/regions".into(),
            reason: "the estate needs at least one account and one Region".into(),
        });
    }
    let regional: Vec<(String, Aws)> = spec.regions.iter().map(|r| (r.clone(), aws.in_region(r))).collect();
    // One reader per Region, shared by every account: one read per key for the estate.
    let readers: Vec<KeyReader<'_>> =
        regional.iter().map(|(_, a)| KeyReader::new(a, params, &spec.own_account)).collect();
    // One AssumeRole per account, joined by its Regions' units.
    let members: HashMap<&str, OnceCell<Result<Aws, Error>>> =
        spec.accounts.iter().map(|a| (a.as_str(), OnceCell::new())).collect();
    let units: Vec<(&str, usize)> =
        spec.accounts.iter().flat_map(|a| (0..regional.len()).map(move |r| (a.as_str(), r))).collect();
    let total = units.len();
    let done = AtomicUsize::new(0);
    let found = AtomicUsize::new(0);
    let results: Vec<Unit> = futures_util::stream::iter(units)
        .map(|(account, r)| {
            let (region, regional_aws) = (&regional[r].0, &regional[r].1);
            let (reader, members, done, found) = (&readers[r], &members, &done, &found);
            async move {
                let unit = scan_unit(aws, spec, params, now, account, region, regional_aws, reader, members).await;
                let resources = found.fetch_add(unit.coverage.resources, Ordering::Relaxed) + unit.coverage.resources;
                let units_done = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(Progress { units_done, units_total: total, resources });
                unit
            }
        })
        .buffer_unordered(spec.concurrency.max(1))
        .collect()
        .await;
    let mut out = EstateScan::default();
    for u in results {
        out.rows.extend(u.rows);
        out.unjudged.extend(u.unjudged);
        out.coverage.push(u.coverage);
    }
    finish(&mut out);
    Ok(out)
}

/// Stable order, and the key table.
pub(crate) fn finish(out: &mut EstateScan) {
    out.rows.sort_by(|a, b| {
        (&a.account, &a.region, &a.resource_type, &a.resource_id).cmp(&(
            &b.account,
            &b.region,
            &b.resource_type,
            &b.resource_id,
        ))
    });
    out.unjudged.sort_by(|a, b| {
        (&a.account, &a.region, &a.resource_type, &a.resource_id).cmp(&(
            &b.account,
            &b.region,
            &b.resource_type,
            &b.resource_id,
        ))
    });
    out.coverage.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
    out.keys = export::key_usage(&out.rows);
}

#[allow(clippy::too_many_arguments)]
async fn scan_unit(
    aws: &Aws,
    spec: &EstateSpec,
    params: &RuleParams,
    now: DateTime<Utc>,
    account: &str,
    region: &str,
    regional_aws: &Aws,
    reader: &KeyReader<'_>,
    members: &HashMap<&str, OnceCell<Result<Aws, Error>>>,
) -> Unit {
    let not_scanned = |why: String| Unit {
        rows: Vec::new(),
        unjudged: Vec::new(),
        coverage: CoverageRow {
            account: account.to_string(),
            region: region.to_string(),
            status: CoverageStatus::NotScanned,
            reason: Some(why),
            resources: 0,
        },
    };
    let member;
    let acting: &Aws = if account == spec.own_account {
        regional_aws
    } else {
        let Some(role) = &spec.member_role else {
            return not_scanned(format!(
                "no member role given (--member-role-name): only the scanner's own account {} can be read",
                spec.own_account
            ));
        };
        let cell = members.get(account).expect("every account has a cell");
        match cell.get_or_init(|| role.aws_in(aws, account)).await {
            Ok(m) => {
                member = m.in_region(region);
                // The member's own keys are same-account reads through its role.
                reader.read_account_with(account, member.kms().clone());
                &member
            }
            Err(e) => return not_scanned(reason(region, e)),
        }
    };
    let home = Home::new(region, account);
    let resources = Mutex::new(Vec::<Resource>::new());
    let push = |r: Resource| resources.lock().expect("resource list poisoned").push(r);
    let families = families(&spec.resource_types);
    let enumerated = futures_util::future::join_all(
        families.iter().map(|(_, types)| handler::enumerate_each(acting, types, &home, &push)),
    )
    .await;
    let failures: Vec<(&str, String)> = enumerated
        .iter()
        .zip(&families)
        .filter_map(|(r, (name, _))| r.as_ref().err().map(|e| (*name, reason(region, e))))
        .collect();
    // A Region the account has not enabled refuses every family alike: say so once.
    let why = match failures.as_slice() {
        [] => None,
        [(_, first), ..]
            if failures.len() == families.len() && failures.iter().all(|(_, r)| r.starts_with("opt-in Region")) =>
        {
            Some(first.clone())
        }
        _ => Some(failures.iter().map(|(name, r)| format!("{name}: {r}")).collect::<Vec<_>>().join("; ")),
    };
    let resources = resources.into_inner().expect("resource list poisoned");
    let count = resources.len();
    let judged: Vec<Result<Assessment, (Resource, Error)>> = futures_util::stream::iter(resources)
        .map(|resource| async move {
            let lookup = match &resource.protection {
                Protection::Kms(k) => match reader.look_up(k, &resource.home).await {
                    Ok(l) => Some(l),
                    Err(e) => return Err((resource, e)),
                },
                _ => None,
            };
            let verdict = decide(&resource.protection, lookup.as_deref(), params, now);
            Ok(Assessment { resource, lookup, verdict })
        })
        .buffer_unordered(JUDGE_CONCURRENCY)
        .collect()
        .await;
    let mut rows = Vec::new();
    let mut unjudged = Vec::new();
    for j in judged {
        match j {
            Ok(a) => rows.push(AuditRow::new(&a, params, now)),
            Err((r, e)) => unjudged.push(Unjudged {
                account: account.to_string(),
                region: region.to_string(),
                resource_type: r.resource_type.as_str().to_string(),
                resource_id: r.resource_id.clone(),
                key_reference: match &r.protection {
                    Protection::Kms(k) => Some(k.to_string()),
                    _ => None,
                },
                reason: format!("key not read: {e}"),
            }),
        }
    }
    let status = match (failures.len(), families.len()) {
        (0, _) => CoverageStatus::Scanned,
        (f, n) if f == n && count == 0 => CoverageStatus::NotScanned,
        _ => CoverageStatus::Partial,
    };
    Unit {
        rows,
        unjudged,
        coverage: CoverageRow {
            account: account.to_string(),
            region: region.to_string(),
            status,
            reason: why,
            resources: count,
        },
    }
}
