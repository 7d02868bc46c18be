//! "Does this key need rotating?" — the gate in front of every automatic rotation.
//!
//! Config starts one remediation per NON_COMPLIANT *resource*, so 30 buckets on one stale key
//! ask for 30 rotations, and a key has only 25 on-demand rotations for its whole life. The
//! gate lets one through and refuses the others with a reason:
//! - the key material (tag, and KMS's newest rotation) is younger than
//!   `maxKeyAgeDays − expiryWarningDays`, judged by the rule's own verdict;
//! - the key had an ON_DEMAND rotation in the last 24 hours (ListKeyRotations);
//! - the finding is not one rotation fixes (no customer managed key, AWS-managed or
//!   AWS_KMS-origin keys, alias-swap for RDS/DynamoDB, which store the key ARN).
//!
//! [`assess`] is pure (facts + parameters + now → [`Need`]); [`read_key`] does the I/O.
//! Concurrent invocations are serialised per key by a claim tag ([`claim`]): the winner
//! re-reads the key after claiming, so a rotation finished by another invocation in the
//! meantime is seen and not repeated.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use aws_sdk_kms::types::{IncludeKeyMaterial, Tag};
use chrono::{DateTime, Duration, Utc};

use crate::aws::{classify, Aws, FailureKind};
use crate::error::{Classified, ErrorClass};
use crate::key::lookup::KeyReader;
use crate::key::{Denial, Fact, Home, KeyFacts, KeyLookup, KeyManager, KeyRef, Rotation};
use crate::params::RuleParams;
use crate::resource::Protection;
use crate::rotation::{RotationError, Strategy, PENDING_TAG};
use crate::verdict::{self, Compliance};

/// Written on a key by the invocation that rotates it, removed when it is done:
/// `<claim id> <RFC 3339 time>`. Other invocations leave a claimed key alone.
pub const CLAIM_TAG: &str = "KmsRotationGuardClaim";
/// A claim older than this is a crashed invocation's (Lambda's limit is 15 minutes).
pub const CLAIM_LEASE: Duration = Duration::minutes(15);
/// After an ON_DEMAND rotation, no other for this long.
pub const ON_DEMAND_COOLDOWN: Duration = Duration::hours(24);

/// Why a remediation failed. Skips are not errors: they are `Ok` responses.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    /// The payload is not a remediation request (contracts.md); Config's retry cannot help.
    #[error("malformed remediation payload: {0}")]
    MalformedPayload(String),
    /// The function's environment is wrong (module, token, PIN secret).
    #[error("invalid remediation settings: {0}")]
    InvalidSettings(String),
    /// Rotating would be unsafe or impossible (pending deletion, quota exhausted, multi-Region,
    /// alias-swap not allowed): nothing was changed, and an operator must act.
    #[error("remediation refused: {0}")]
    Refused(String),
    /// Our own read of the key was refused: the rotation role lacks a permission.
    #[error("{operation} denied: {message}")]
    AccessDenied { operation: String, message: String },
    /// A read before the rotation failed; `transient` ones succeed on a retry.
    #[error("{operation} failed{}: {message}", if *.transient { " (transient; retry)" } else { "" })]
    Aws { operation: &'static str, transient: bool, message: String },
    #[error(transparent)]
    Rotation(#[from] RotationError),
}

impl RemediationError {
    /// The stable Lambda errorType of this failure (one naming for every error: `ErrorClass`).
    pub fn error_type(&self) -> &'static str {
        Classified::class(self).as_str()
    }
}

impl Classified for RemediationError {
    fn class(&self) -> ErrorClass {
        match self {
            RemediationError::MalformedPayload(_) => ErrorClass::InvalidRequest,
            RemediationError::InvalidSettings(_) => ErrorClass::Configuration,
            RemediationError::Refused(_) => ErrorClass::RemediationRefused,
            RemediationError::AccessDenied { .. } => ErrorClass::AccessDenied,
            RemediationError::Aws { transient, message, .. } => ErrorClass::of_aws(*transient, message),
            RemediationError::Rotation(r) => r.class(),
        }
    }
}

/// The resource family a remediation is for (contracts.md `resourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Rds,
    DynamoDb,
    S3,
}

impl std::str::FromStr for ResourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rds" | "aws::rds::dbinstance" | "aws::rds::dbcluster" => Ok(ResourceKind::Rds),
            "dynamodb" | "aws::dynamodb::table" => Ok(ResourceKind::DynamoDb),
            "s3" | "aws::s3::bucket" => Ok(ResourceKind::S3),
            other => Err(format!("unknown resourceType {:?}: use rds, dynamodb or s3", clip(other, 40))),
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::Rds => "rds",
            ResourceKind::DynamoDb => "dynamodb",
            ResourceKind::S3 => "s3",
        })
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Rotate: the reason says what the rotation fixes.
    Rotate(String),
    /// A rotation was left half done (pending tag): finish it. Spends no new rotation
    /// beyond the one it started.
    Resume(String),
    /// Nothing to do, or nothing rotation can fix: a success with this reason.
    Skip(String),
    /// Unsafe or impossible: an error an operator must look at.
    Refuse(String),
    /// The rotation role cannot read what the decision needs.
    Denied(Denial),
}

/// Findings that rotation cannot fix, known from the request alone.
pub fn finding_check(key_id: &str, resource: Option<ResourceKind>, strategy: Strategy) -> Option<String> {
    let key = key_id.trim();
    if key.is_empty() {
        return Some(
            "the resource has no customer managed KMS key (unencrypted, SSE-S3 or an AWS-owned key): \
             rotation cannot fix this; encrypt it with a guarded customer managed key"
                .into(),
        );
    }
    if let Ok(r) = KeyRef::parse(key) {
        if r.is_aws_managed_alias() {
            return Some(format!(
                "{key} is an AWS-managed key: AWS rotates it, and this tool cannot; \
                 re-encrypt the resource with a guarded customer managed key"
            ));
        }
    }
    if strategy == Strategy::AliasSwap && matches!(resource, Some(ResourceKind::Rds | ResourceKind::DynamoDb)) {
        return Some(format!(
            "alias-swap cannot fix a {} resource: it stores the key ARN, never the alias, so it would keep \
             using the old key; use in-place",
            resource.expect("matched")
        ));
    }
    None
}

/// The pure decision: does the key these facts describe need rotating now?
///
/// `on_demand` is the dates of the key's ON_DEMAND rotations (ListKeyRotations
/// RotationType); `p` the rule's parameters, so the gate judges as the rule does.
pub fn assess(facts: &KeyFacts, on_demand: &Fact<Vec<DateTime<Utc>>>, p: &RuleParams, now: DateTime<Utc>) -> Need {
    let key = &facts.key_arn;
    if facts.manager == KeyManager::Aws {
        return Need::Skip(format!("{key} is AWS-managed: AWS rotates it; there is nothing to import"));
    }
    if facts.origin != "EXTERNAL" {
        return Need::Skip(format!(
            "{key} has origin {}: only imported (EXTERNAL) material is rotated here; \
             for AWS_KMS keys enable automatic rotation (EnableKeyRotation)",
            facts.origin
        ));
    }
    if facts.multi_region {
        return Need::Refuse(format!(
            "{key} is multi-Region: importing into its replicas is not implemented, so it is not rotated"
        ));
    }
    match facts.state.as_str() {
        "Enabled" => {}
        // The first import spends no on-demand rotation.
        "PendingImport" => return Need::Rotate(format!("{key} has no key material yet: first import")),
        "PendingDeletion" | "PendingReplicaDeletion" => {
            return Need::Refuse(format!(
                "{key} is pending deletion: cancel the deletion (kms:CancelKeyDeletion) first"
            ))
        }
        other => return Need::Refuse(format!("{key} is {other}: only Enabled keys are rotated")),
    }
    let tags = match &facts.tags {
        Fact::Known(t) => t,
        Fact::Denied(d) => return Need::Denied(d.clone()),
        Fact::Unsupported(why) | Fact::NotForThisKey(why) => {
            return Need::Refuse(format!("cannot read the tags of {key}: {why}"))
        }
        Fact::NotRead => return Need::Refuse(format!("the tags of {key} were not read (internal error)")),
    };
    if let Some(m) = tags.get(PENDING_TAG) {
        return Need::Resume(format!("{key} has a rotation left half done (material {m}): finishing it"));
    }
    match on_demand {
        Fact::Known(dates) => {
            if let Some(last) = dates.iter().filter(|d| now.signed_duration_since(**d) < ON_DEMAND_COOLDOWN).max() {
                return Need::Skip(format!(
                    "{key} was rotated on demand at {} (less than 24 hours ago); not rotated again",
                    last.format("%Y-%m-%dT%H:%M:%SZ")
                ));
            }
        }
        Fact::Denied(d) => return Need::Denied(d.clone()),
        // An endpoint without ListKeyRotations (emulators): the tag below still decides.
        // Custom key stores never reach here (only EXTERNAL keys are rotated).
        Fact::Unsupported(_) | Fact::NotForThisKey(_) | Fact::NotRead => {}
    }
    let (model, valid_to) = facts.expiry();
    if model == Some("KEY_MATERIAL_EXPIRES")
        && valid_to.is_none_or(|v| v.signed_duration_since(now) <= Duration::days(p.expiry_warning_days))
    {
        return Need::Rotate(format!(
            "the key material of {key} expires {}: new material is needed",
            valid_to.map(|v| format!("on {}", v.format("%Y-%m-%d"))).unwrap_or_else(|| "(date unknown)".into())
        ));
    }

    // The rule's own verdict, with the age limit brought forward by the warning window:
    // rotation is due from maxKeyAgeDays − expiryWarningDays on (never before a day).
    let due_days = (p.max_key_age_days - p.expiry_warning_days).max(1);
    // The verdict fails a key older than its limit; "due at due_days" is "older than due_days − 1".
    let early = RuleParams { max_key_age_days: due_days - 1, ..p.clone() };
    let reference = KeyRef::parse(key).unwrap_or_else(|_| KeyRef::KeyId(facts.key_id.clone()));
    let lookup = KeyLookup::Found(Box::new(facts.clone()));
    let v = verdict::decide(&Protection::Kms(reference), Some(&lookup), &early, now);
    if v.compliance != Compliance::NonCompliant {
        return Need::Skip(format!(
            "{key} does not need rotating (due at {due_days} days = maxKeyAgeDays − expiryWarningDays): {}",
            v.annotation
        ));
    }
    // The verdict also fails keys for tag problems. Rotate only when the material itself is
    // old: the newest date the tag or KMS vouches for.
    match material_date(facts, tags, p, now) {
        Some(d) if now.signed_duration_since(d).num_days() < due_days => Need::Skip(format!(
            "the rule finds: {}; but the key material is from {} ({} days old, due at {due_days}): \
             rotating would not fix this; correct the tag {}",
            v.annotation,
            d.format("%Y-%m-%d"),
            now.signed_duration_since(d).num_days().max(0),
            p.rotation_tag_key
        )),
        Some(_) => Need::Rotate(v.annotation),
        None => Need::Skip(format!(
            "the rule finds: {}; the age of the key material is unknown (no valid {} tag and no KMS rotation \
             history), so it is not rotated automatically; an operator may run `kms-rotation-guard rotate --force`",
            v.annotation, p.rotation_tag_key
        )),
    }
}

/// The newest date the material is known to be from: KMS's newest rotation (or the key's
/// creation) when KMS lists rotations, and the tag unless it is in the future or claims a
/// rotation KMS never saw.
fn material_date(
    facts: &KeyFacts,
    tags: &BTreeMap<String, String>,
    p: &RuleParams,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tolerance = Duration::days(1);
    let kms = facts.newest_material_date();
    let tag = tags
        .get(&p.rotation_tag_key)
        .and_then(|raw| verdict::parse_rotation_date(raw))
        .filter(|t| *t <= now + tolerance)
        .filter(|t| kms.is_none_or(|k| *t <= k + tolerance));
    kms.max(tag)
}

/// The key as the gate needs it: the rule's key facts, and the dates of its ON_DEMAND
/// rotations. `Ok(None)`: KMS has no such key.
pub async fn read_key(
    aws: &Aws,
    key: &str,
    p: &RuleParams,
) -> Result<Option<(KeyFacts, Fact<Vec<DateTime<Utc>>>)>, RemediationError> {
    let reference = KeyRef::parse(key).map_err(|e| RemediationError::MalformedPayload(format!("keyId: {e}")))?;
    if reference.is_aws_managed_alias() {
        let mut f = KeyFacts::new(key, "", "AWS_KMS");
        f.key_arn = key.to_string();
        f.manager = KeyManager::Aws;
        return Ok(Some((f, Fact::NotRead)));
    }
    // The rotation runs in the key's own account with its own role: no reader role, and
    // every read is a same-account read. A reference without an account (alias, key id) is
    // resolved first, so the reader knows whose key it is.
    let (reference, own) = match &reference {
        KeyRef::KeyArn(a) => (reference.clone(), a.account.clone()),
        _ => match aws.kms().describe_key().key_id(key).send().await {
            Ok(out) => match out.key_metadata().and_then(|m| m.arn()).map(KeyRef::parse) {
                Some(Ok(r @ KeyRef::KeyArn(_))) => {
                    let KeyRef::KeyArn(a) = &r else { unreachable!() };
                    let account = a.account.clone();
                    (r, account)
                }
                _ => {
                    return Err(RemediationError::Aws {
                        operation: "kms:DescribeKey",
                        transient: false,
                        message: "the response had no key ARN".into(),
                    })
                }
            },
            Err(e) if classify(&e).kind == FailureKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err("kms:DescribeKey")(e)),
        },
    };
    let read_params = RuleParams { key_reader_role_name: None, verify_tag_against_kms: false, ..p.clone() };
    let home = Home::new(aws.region(), own.clone());
    let reader = KeyReader::new(aws, &read_params, &own);
    let looked = reader.look_up_all([(&reference, &home)]).await.map_err(|e| match e {
        crate::Error::Aws { operation, transient, message } => RemediationError::Aws { operation, transient, message },
        other => RemediationError::Aws { operation: "kms:DescribeKey", transient: false, message: other.to_string() },
    })?;
    let looked = looked.into_values().next().map(std::sync::Arc::unwrap_or_clone);
    let mut facts = match looked {
        Some(KeyLookup::Found(f)) => *f,
        Some(KeyLookup::NotFound) => return Ok(None),
        Some(KeyLookup::Denied(d)) => {
            return Err(RemediationError::AccessDenied { operation: d.action, message: d.hint })
        }
        Some(KeyLookup::AwsManagedAlias) | None => {
            let mut f = KeyFacts::new(key, &own, "AWS_KMS");
            f.key_arn = key.to_string();
            f.manager = KeyManager::Aws;
            return Ok(Some((f, Fact::NotRead)));
        }
    };
    let mut on_demand = Fact::NotRead;
    if facts.state == "Enabled" && facts.manager == KeyManager::Customer {
        let (rotations, dates) = rotation_history(aws, &facts.key_arn).await?;
        if p.verify_tag_against_kms {
            facts.rotations = rotations;
        }
        on_demand = dates;
    }
    Ok(Some((facts, on_demand)))
}

type History = (Fact<Vec<Rotation>>, Fact<Vec<DateTime<Utc>>>);

/// ListKeyRotations with every material: the rule's rotation facts and the ON_DEMAND dates.
async fn rotation_history(aws: &Aws, key_arn: &str) -> Result<History, RemediationError> {
    let mut rotations = Vec::new();
    let mut on_demand = Vec::new();
    let mut marker = None;
    loop {
        let out = aws
            .kms()
            .list_key_rotations()
            .key_id(key_arn)
            .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
            .set_marker(marker)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let f = classify(&e);
                return match f.kind {
                    FailureKind::Unsupported => {
                        let why = "kms:ListKeyRotations is not implemented by this endpoint".to_string();
                        Ok((Fact::Unsupported(why.clone()), Fact::Unsupported(why)))
                    }
                    FailureKind::Denied => Err(RemediationError::AccessDenied {
                        operation: "kms:ListKeyRotations".into(),
                        message: format!("{}; the rotation role needs it to count on-demand rotations", f.message),
                    }),
                    _ => Err(RemediationError::Aws {
                        operation: "kms:ListKeyRotations",
                        transient: f.kind == FailureKind::Transient,
                        message: f.message,
                    }),
                };
            }
        };
        for r in out.rotations() {
            let rotation = crate::key::lookup::rotation_of(r);
            if r.rotation_type().map(|t| t.as_str()) == Some("ON_DEMAND") {
                on_demand.extend(rotation.date);
            }
            rotations.push(rotation);
        }
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok((Fact::Known(rotations), Fact::Known(on_demand)));
        }
    }
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

async fn key_tags(aws: &Aws, key_arn: &str) -> Result<BTreeMap<String, String>, RemediationError> {
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
            .map_err(read_err("kms:ListResourceTags"))?;
        tags.extend(out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())));
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok(tags);
        }
    }
}

fn read_err<E>(
    operation: &'static str,
) -> impl FnOnce(
    aws_sdk_kms::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> RemediationError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let f = classify(&e);
        match f.kind {
            FailureKind::Denied => RemediationError::AccessDenied { operation: operation.into(), message: f.message },
            kind => RemediationError::Aws { operation, transient: kind == FailureKind::Transient, message: f.message },
        }
    }
}

/// What a gated rotation did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing was changed; the reason says why.
    Skipped(String),
    /// `dry_run`: the gate let the key through and this is the plan.
    Planned {
        reason: String,
        plan: crate::rotation::RotationPlan,
    },
    Rotated {
        reason: String,
        record: crate::rotation::RotationRecord,
    },
}

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

/// The gate, then the rotation: read the key, [`assess`] it, claim it, read and assess it
/// again, rotate, release the claim. `rotate` without `--force` comes here; the Lambda
/// runs the same two halves, [`admit`] and [`rotate_admitted`], so that a skip needs
/// neither the PIN nor the HSM.
pub async fn rotate_if_needed(
    aws: &Aws,
    rotator: &crate::rotation::Rotator<'_>,
    req: &crate::rotation::RotationRequest,
    params: &RuleParams,
    claim_id: &str,
    settle: StdDuration,
) -> Result<Outcome, RemediationError> {
    match admit(aws, req, params).await? {
        Admission::Skip(reason) => Ok(Outcome::Skipped(reason)),
        Admission::Due { key_arn, reason } => {
            rotate_admitted(aws, rotator, req, params, &key_arn, &reason, claim_id, settle).await
        }
    }
}

/// The gate's first look at a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Skip(String),
    Due { key_arn: String, reason: String },
}

/// Reads the key and runs the gate: no write, no HSM.
pub async fn admit(
    aws: &Aws,
    req: &crate::rotation::RotationRequest,
    params: &RuleParams,
) -> Result<Admission, RemediationError> {
    Ok(match gate(aws, &req.key, params, req.required_tag.as_ref()).await? {
        Ok((key_arn, reason)) => Admission::Due { key_arn, reason },
        Err(skip) => Admission::Skip(skip),
    })
}

/// The second half of [`rotate_if_needed`], for a key [`admit`] found due: claim, look
/// again, rotate, release.
#[allow(clippy::too_many_arguments)]
pub async fn rotate_admitted(
    aws: &Aws,
    rotator: &crate::rotation::Rotator<'_>,
    req: &crate::rotation::RotationRequest,
    params: &RuleParams,
    key_arn: &str,
    reason: &str,
    claim_id: &str,
    settle: StdDuration,
) -> Result<Outcome, RemediationError> {
    let guard = req.required_tag.as_ref();
    let key_arn = key_arn.to_string();
    let reason = reason.to_string();
    if req.dry_run {
        let plan = rotator.plan(req).await?;
        return Ok(Outcome::Planned { reason, plan });
    }
    if let Claim::Taken(why) = claim(aws, &key_arn, claim_id, settle, Utc::now()).await? {
        return Ok(Outcome::Skipped(why));
    }
    // Another invocation may have finished a rotation between our read and our claim.
    let result = match gate(aws, &req.key, params, guard).await {
        Ok(Ok((_, reason))) => {
            Box::pin(rotator.rotate(req)).await.map(|(_, record)| (reason, record)).map_err(Into::into)
        }
        Ok(Err(skip)) => {
            release(aws, &key_arn, claim_id).await?;
            return Ok(Outcome::Skipped(skip));
        }
        Err(e) => Err(e),
    };
    let mut holders = vec![key_arn.clone()];
    if let Ok((_, Some(r))) = &result {
        if r.current_key_arn != key_arn {
            // alias-swap copies the old key's tags, our claim included.
            holders.push(r.current_key_arn.clone());
        }
    }
    for k in holders {
        if let Err(e) = release(aws, &k, claim_id).await {
            // The lease ends it in 15 minutes; the rotation's own outcome matters more.
            tracing::warn!(key = %k, error = %e, "could not remove the rotation claim");
        }
    }
    match result? {
        (reason, Some(record)) => Ok(Outcome::Rotated { reason, record }),
        (reason, None) => Err(RemediationError::Refused(format!("rotation returned no record ({reason})"))),
    }
}

/// `Ok(Ok((key ARN, why)))` when the key needs rotating, `Ok(Err(reason))` to skip it.
/// `guard`: the tag a key must carry to be rotated at all (KRG_KEY_TAG_VALUE), checked
/// before the claim, which the rotation role may only write on guarded keys.
async fn gate(
    aws: &Aws,
    key: &str,
    params: &RuleParams,
    guard: Option<&(String, String)>,
) -> Result<Result<(String, String), String>, RemediationError> {
    let Some((facts, on_demand)) = read_key(aws, key, params).await? else {
        return Err(RemediationError::Refused(format!(
            "KMS key {} not found in this account and region",
            clip(key, 120)
        )));
    };
    if let (Some((tag, value)), Fact::Known(tags)) = (guard, &facts.tags) {
        if tags.get(tag) != Some(value) {
            return Err(RemediationError::Refused(format!(
                "key {} is not tagged {tag}={value}: this rotation only touches keys marked for it",
                facts.key_arn
            )));
        }
    }
    match assess(&facts, &on_demand, params, Utc::now()) {
        Need::Rotate(why) | Need::Resume(why) => Ok(Ok((facts.key_arn, why))),
        Need::Skip(why) => Ok(Err(why)),
        Need::Refuse(why) => Err(RemediationError::Refused(why)),
        Need::Denied(d) => Err(RemediationError::AccessDenied { operation: d.action, message: d.hint }),
    }
}

fn clip(s: &str, max: usize) -> String {
    crate::key::reference::truncate_chars(s, max)
}

#[cfg(test)]
mod tests;
