//! The gated rotation: read the key, assess it, claim it, read and assess it again, rotate,
//! release the claim. The CLI's `rotate` (without `--force`) and the remediation Lambda run
//! it; the Lambda in two halves so that a skip needs neither the PIN nor the HSM.

use std::time::Duration as StdDuration;

use chrono::Utc;

use super::claim::{claim, release, Claim};
use super::gate::{assess, Need};
use super::reads::read_key;
use super::{clip, RemediationError};
use crate::aws::Aws;
use crate::key::Fact;
use crate::params::RuleParams;

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
