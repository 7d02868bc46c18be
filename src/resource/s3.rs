//! S3 buckets. Config's resourceId is the bucket name; the encryption lives in
//! `supplementaryConfiguration.ServerSideEncryptionConfiguration`, which Config sometimes
//! delivers as a JSON string to be parsed again.
//!
//! Reads only.

use aws_sdk_s3::types::ServerSideEncryption;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{field_ci, key_ref, opt_str, Protection, Resource, ResourceType};
use crate::aws::{classify, fail, Aws, FailureKind};
use crate::error::Error;
use crate::key::{Denial, Home, KeyRef};

/// GetBucketEncryption calls in flight at once. S3 serves at least 5,500 GET requests per
/// second per partitioned prefix (S3 User Guide, "Optimizing Amazon S3 performance"); no
/// separate rate is published for bucket-configuration reads, and each call reads a
/// different bucket. 32 in flight is under 1,600 a second at a 20 ms round trip, and keeps
/// one Lambda's sockets and memory small.
const CONCURRENCY: usize = 32;
/// ListBuckets' largest page.
const MAX_BUCKETS_PER_PAGE: i32 = 10_000;
const PATH: &str = "supplementaryConfiguration.ServerSideEncryptionConfiguration";

pub fn protection_from_item(item: &Value) -> Result<Protection, Error> {
    let sse = item.get("supplementaryConfiguration").and_then(|s| field_ci(s, "ServerSideEncryptionConfiguration"));
    let parsed;
    let sse = match sse {
        None => return Ok(no_default_encryption()),
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| Error::malformed(format!("{PATH} is a string but not JSON: {e}")))?;
            &parsed
        }
        Some(v) => v,
    };
    let rules = match field_ci(sse, "rules") {
        None => return Ok(no_default_encryption()),
        Some(Value::Array(r)) => r,
        Some(_) => return Err(Error::malformed(format!("{PATH}.rules must be an array"))),
    };
    let mut defaults = Vec::new();
    for rule in rules {
        let Some(d) = field_ci(rule, "applyServerSideEncryptionByDefault") else { continue };
        let path = format!("{PATH}.rules[].applyServerSideEncryptionByDefault");
        defaults.push((
            opt_str(d, "sseAlgorithm", &path)?.map(str::to_string),
            opt_str(d, "kmsMasterKeyID", &path)?.map(str::to_string),
        ));
    }
    protection(defaults.iter().map(|(a, k)| (a.as_deref(), k.as_deref())))
}

/// No default encryption recorded: since January 2023 S3 applies SSE-S3 to every bucket.
fn no_default_encryption() -> Protection {
    Protection::S3ManagedByDefault
}

/// The first default-encryption rule decides (S3 allows exactly one).
fn protection<'a>(mut defaults: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Result<Protection, Error> {
    let Some((algorithm, key)) = defaults.next() else { return Ok(no_default_encryption()) };
    match (algorithm.unwrap_or("AES256"), key) {
        ("aws:kms" | "aws:kms:dsse", Some(k)) => Ok(Protection::Kms(key_ref(k, "kmsMasterKeyID")?)),
        // SSE-KMS without a key id means the AWS-managed key aws/s3.
        ("aws:kms" | "aws:kms:dsse", None) => Ok(Protection::Kms(KeyRef::AliasName("alias/aws/s3".into()))),
        ("AES256", _) => Ok(Protection::S3Managed),
        (other, _) => Err(Error::malformed(format!(
            "unknown sseAlgorithm {:?}",
            crate::key::reference::truncate_chars(other, 40)
        ))),
    }
}

/// Every bucket of this region: ListBuckets (paginated), then GetBucketEncryption each.
pub async fn enumerate(aws: &Aws, home: &Home, found: &(dyn Fn(Resource) + Send + Sync)) -> Result<(), Error> {
    let mut names = Vec::new();
    // Without BucketRegion, ListBuckets names every region's buckets, and reading another
    // region's bucket answers 301 PermanentRedirect. A Config rule is regional: list only
    // this region's. MaxBuckets makes AWS paginate (unpaginated ListBuckets is refused in
    // accounts whose bucket quota is above 10,000).
    let mut pages =
        aws.s3().list_buckets().bucket_region(&home.region).max_buckets(MAX_BUCKETS_PER_PAGE).into_paginator().send();
    while let Some(page) = pages.next().await {
        for b in page.map_err(fail("s3:ListAllMyBuckets"))?.buckets() {
            // Belt and braces: an endpoint that ignores the filter but names regions.
            if b.bucket_region().is_some_and(|r| r != home.region) {
                continue;
            }
            if let Some(n) = b.name() {
                names.push(n.to_string());
            }
        }
    }
    let resources = futures_util::stream::iter(names)
        .map(|name| async move {
            let protection = match aws.s3().get_bucket_encryption().bucket(&name).send().await {
                Ok(out) => {
                    let rules = out.server_side_encryption_configuration().map(|c| c.rules()).unwrap_or_default();
                    let defaults: Vec<(Option<String>, Option<String>)> = rules
                        .iter()
                        .filter_map(|r| r.apply_server_side_encryption_by_default())
                        .map(|d| (Some(sse_name(d.sse_algorithm())), d.kms_master_key_id().map(str::to_string)))
                        .collect();
                    protection(defaults.iter().map(|(a, k)| (a.as_deref(), k.as_deref())))?
                }
                Err(e) => {
                    let f = classify(&e);
                    match (f.kind, f.code.as_deref()) {
                        (_, Some("ServerSideEncryptionConfigurationNotFoundError")) => no_default_encryption(),
                        (FailureKind::NotFound, _) => return Ok(None),
                        // A bucket policy (or an SCP) refusing it: a finding for this bucket.
                        (FailureKind::Denied, _) => Protection::Unreadable(Denial {
                            action: "s3:GetEncryptionConfiguration".into(),
                            hint: "allow it to the evaluator role in the bucket policy and IAM policy".into(),
                        }),
                        // Moved to another region since it was listed: not this rule's bucket.
                        (_, Some("PermanentRedirect")) => {
                            tracing::warn!(bucket = %name, "bucket is in another region; skipped");
                            return Ok(None);
                        }
                        _ => return Err(f.into_error("s3:GetEncryptionConfiguration")),
                    }
                }
            };
            Ok(Some(Resource {
                resource_type: ResourceType::S3Bucket,
                resource_id: name.clone(),
                name,
                home: home.clone(),
                protection,
            }))
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|r| {
            if let Some(r) = r {
                found(r);
            }
            futures_util::future::ready(Ok(()))
        });
    resources.await
}

fn sse_name(a: &ServerSideEncryption) -> String {
    a.as_str().to_string()
}
