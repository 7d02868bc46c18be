//! The sweep: every resource of the rule's types in an account and Region, enumerated family
//! by family at the same time, each key looked up once however many resources share it, and
//! every resource judged by `verdict`. Reads only; reporting to Config is the caller's.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::{Assessment, Keys, Outcome};
use crate::aws::Aws;
use crate::error::Error;
use crate::key::lookup::KeyReader;
use crate::key::{Home, KeyLookup};
use crate::params::RuleParams;
use crate::resource::{dynamodb, rds, s3, Protection, Resource, ResourceType};
use crate::rule::Rule;
use crate::verdict::decide;

/// Enumerates and judges every resource of the rule's types in `home`, as a pipeline: the
/// families are listed at the same time, and each resource's key is looked up (once per
/// key, shared) as soon as the resource arrives, while the enumeration goes on.
pub async fn sweep(
    aws: &Aws,
    rule: Rule,
    params: &RuleParams,
    home: &Home,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    sweep_with(Keys { aws, acting: aws, account: &home.account }, rule, params, home, now).await
}

pub(super) async fn sweep_with(
    keys: Keys<'_>,
    rule: Rule,
    params: &RuleParams,
    home: &Home,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let aws = keys.acting;
    let reader = keys.reader(params);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Resource>();
    let enumerated = async move {
        let send = move |r: Resource| {
            // The receiver lives until the enumeration ends; a send cannot fail before.
            let _ = tx.send(r);
        };
        enumerate_each(aws, rule.resource_types, home, &send).await?;
        Ok::<_, Error>(started.elapsed())
    };
    let judged = async {
        let mut assessments = Vec::new();
        let mut pending = futures_util::stream::FuturesUnordered::new();
        let mut open = true;
        let mut last_lookup = std::time::Duration::ZERO;
        loop {
            tokio::select! {
                r = rx.recv(), if open => match r {
                    Some(resource) => pending.push(judge(&reader, resource, params, now)),
                    None => open = false,
                },
                Some(a) = pending.next(), if !pending.is_empty() => {
                    let (a, looked_up) = a?;
                    if looked_up {
                        last_lookup = started.elapsed();
                    }
                    assessments.push(a);
                }
                else => break,
            }
        }
        Ok::<_, Error>((assessments, last_lookup))
    };
    let (enumeration, (mut assessments, keys)) = tokio::try_join!(enumerated, judged)?;
    // Completion order is the network's; report in a stable order.
    assessments.sort_by(|a, b| {
        (a.resource.resource_type, &a.resource.resource_id).cmp(&(b.resource.resource_type, &b.resource.resource_id))
    });
    let stages = vec![("enumerated", enumeration), ("keys read", keys), ("judged", started.elapsed())];
    Ok(Outcome { assessments, stages, ..Outcome::default() })
}

/// One resource: its key's facts (shared with every resource on the key), then the verdict.
/// Also says whether it waited for a key.
async fn judge(
    reader: &KeyReader<'_>,
    resource: Resource,
    params: &RuleParams,
    now: DateTime<Utc>,
) -> Result<(Assessment, bool), Error> {
    let lookup = match &resource.protection {
        Protection::Kms(k) => Some(reader.look_up(k, &resource.home).await?),
        _ => None,
    };
    let verdict = decide(&resource.protection, lookup.as_deref(), params, now);
    let looked_up = lookup.is_some();
    Ok((Assessment { resource, lookup, verdict }, looked_up))
}

/// Every resource of `types` in `home`, each handed to `found` as it is read; the
/// families are listed at the same time.
pub async fn enumerate_each(
    aws: &Aws,
    types: &[ResourceType],
    home: &Home,
    found: &(dyn Fn(Resource) + Send + Sync),
) -> Result<(), Error> {
    let rds = async {
        if types.iter().any(|t| matches!(t, ResourceType::RdsDbInstance | ResourceType::RdsDbCluster)) {
            rds::enumerate(aws, home, types, found).await?;
        }
        Ok::<_, Error>(())
    };
    let dynamodb = async {
        if types.contains(&ResourceType::DynamoDbTable) {
            dynamodb::enumerate(aws, home, found).await?;
        }
        Ok::<_, Error>(())
    };
    let s3 = async {
        if types.contains(&ResourceType::S3Bucket) {
            s3::enumerate(aws, home, found).await?;
        }
        Ok::<_, Error>(())
    };
    tokio::try_join!(rds, dynamodb, s3)?;
    Ok(())
}

/// Every resource of `types` in `home`, in a stable order (the `scan` command).
pub async fn enumerate(aws: &Aws, types: &[ResourceType], home: &Home) -> Result<Vec<Resource>, Error> {
    let found = std::sync::Mutex::new(Vec::new());
    enumerate_each(aws, types, home, &|r| found.lock().expect("resource list poisoned").push(r)).await?;
    let mut out = found.into_inner().expect("resource list poisoned");
    out.sort_by(|a, b| (a.resource_type, &a.resource_id).cmp(&(b.resource_type, &b.resource_id)));
    Ok(out)
}

/// Judges resources, looking each distinct key up once.
pub async fn assess(
    aws: &Aws,
    params: &RuleParams,
    own_account: &str,
    resources: Vec<Resource>,
    now: DateTime<Utc>,
) -> Result<Vec<Assessment>, Error> {
    assess_with(Keys { aws, acting: aws, account: own_account }, params, resources, now).await
}

pub(super) async fn assess_with(
    keys: Keys<'_>,
    params: &RuleParams,
    resources: Vec<Resource>,
    now: DateTime<Utc>,
) -> Result<Vec<Assessment>, Error> {
    let reader = keys.reader(params);
    let refs = resources.iter().filter_map(|r| match &r.protection {
        Protection::Kms(k) => Some((k, &r.home)),
        _ => None,
    });
    let lookups: HashMap<String, Arc<KeyLookup>> = reader.look_up_all(refs).await?;
    Ok(resources
        .into_iter()
        .map(|resource| {
            let lookup = match &resource.protection {
                Protection::Kms(k) => lookups.get(&k.qualified(&resource.home)).cloned(),
                _ => None,
            };
            let verdict = decide(&resource.protection, lookup.as_deref(), params, now);
            Assessment { resource, lookup, verdict }
        })
        .collect())
}
