//! The claim: one invocation at a time rotates a key. A tag on the key names the holder and
//! when it claimed; a lease ends a crashed holder's claim. Writes only the claim tag.

use std::time::Duration as StdDuration;

use aws_sdk_kms::types::Tag;
use chrono::{DateTime, Duration, Utc};

use super::reads::{key_tags, read_err};
use super::{clip, RemediationError};
use crate::aws::Aws;
use crate::verdict;

/// Written on a key by the invocation that rotates it, removed when it is done:
/// `<claim id> <RFC 3339 time>`. Other invocations leave a claimed key alone.
pub const CLAIM_TAG: &str = "KmsRotationGuardClaim";
/// A claim older than this is a crashed invocation's (Lambda's limit is 15 minutes).
pub const CLAIM_LEASE: Duration = Duration::minutes(15);
/// How long a claim settles before it is read back (see [`claim`]).
pub const DEFAULT_CLAIM_SETTLE: StdDuration = StdDuration::from_secs(2);

/// A random claim id (no key material: it only tells invocations apart).
pub fn new_claim_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b = (t.as_nanos() as u64 ^ u64::from(std::process::id())).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The outcome of trying to claim a key for one rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation holds the key until [`release`].
    Held,
    /// Another invocation holds it: skip with this reason.
    Taken(String),
}

/// Claims `key_arn` for `claim_id`: refuses a live claim of another, writes ours, waits
/// `settle` and reads it back. TagResource is last-writer-wins, so of invocations that
/// write within `settle` of each other only the last one reads its own value back; an
/// invocation that read before the first claim and writes more than `settle` later would
/// also win, which is why the winner re-reads the key and runs the gate again.
pub async fn claim(
    aws: &Aws,
    key_arn: &str,
    claim_id: &str,
    settle: StdDuration,
    now: DateTime<Utc>,
) -> Result<Claim, RemediationError> {
    if let Some(other) = live_claim(aws, key_arn, claim_id, now).await? {
        return Ok(Claim::Taken(other));
    }
    let value = format!("{claim_id} {}", now.format("%Y-%m-%dT%H:%M:%SZ"));
    let tag = Tag::builder().tag_key(CLAIM_TAG).tag_value(value).build().expect("key and value set");
    aws.kms().tag_resource().key_id(key_arn).tags(tag).send().await.map_err(read_err("kms:TagResource"))?;
    tokio::time::sleep(settle).await;
    Ok(match live_claim(aws, key_arn, claim_id, now).await? {
        Some(other) => Claim::Taken(other),
        None => Claim::Held,
    })
}

/// Removes our claim (and only ours) from the key.
pub async fn release(aws: &Aws, key_arn: &str, claim_id: &str) -> Result<(), RemediationError> {
    let tags = key_tags(aws, key_arn).await?;
    if tags.get(CLAIM_TAG).is_some_and(|v| v.split(' ').next() == Some(claim_id)) {
        aws.kms()
            .untag_resource()
            .key_id(key_arn)
            .tag_keys(CLAIM_TAG)
            .send()
            .await
            .map_err(read_err("kms:UntagResource"))?;
    }
    Ok(())
}

/// Another invocation's unexpired claim, as a reason to skip.
async fn live_claim(
    aws: &Aws,
    key_arn: &str,
    claim_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, RemediationError> {
    let tags = key_tags(aws, key_arn).await?;
    let Some(value) = tags.get(CLAIM_TAG) else { return Ok(None) };
    let mut parts = value.splitn(2, ' ');
    let holder = parts.next().unwrap_or_default();
    if holder == claim_id {
        return Ok(None);
    }
    let since = parts.next().and_then(verdict::parse_rotation_date);
    match since {
        Some(t) if now.signed_duration_since(t) > CLAIM_LEASE => {
            tracing::warn!(key = key_arn, holder, "taking over a claim older than 15 minutes");
            Ok(None)
        }
        _ => Ok(Some(format!(
            "another remediation ({}) is rotating {key_arn} since {}; not rotated twice",
            clip(holder, 64),
            since.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "an unknown time".into())
        ))),
    }
}
