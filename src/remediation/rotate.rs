//! The gated rotation: read the key, assess it, claim it, read and assess it again, rotate,
//! release the claim. The CLI's `rotate` (without `--force`) and the remediation Lambda run
//! it; the Lambda in two halves so that a skip needs neither the PIN nor the HSM.

use std::time::Duration as StdDuration;

use chrono::Utc;

use super::claim::{claim, release, Claim};
use super::gate::{assess, Need};
use super::policy::{quota_check, DEFAULT_MIN_ROTATIONS_LEFT};
use super::reads::read_key;
use super::usage::{self, Usage};
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

/// What the gate holds a request to beyond the key's own need (issue 20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The workload account that asks (from the transport): it must use the key. `None`
    /// for the security account's own operators.
    pub caller: Option<String>,
    /// A due key with this many on-demand rotations left or fewer is refused.
    pub min_rotations_left: u32,
    /// Multi-Region primaries may be rotated (the rotation imports the same material into
    /// every replica): the Lambda's KRG_ROTATE_MULTI_REGION, which security-account.yaml sets
    /// together with the role's rights on other Regions' `mrk-*` keys. The rotation's plan
    /// still refuses replicas and alias-swap of multi-Region keys.
    pub multi_region: bool,
}

impl Default for Scope {
    /// An operator's scope with the default policy (the CLI's `rotate` without `--force`,
    /// with the operator's own credentials: multi-Region primaries allowed).
    fn default() -> Self {
        Scope { caller: None, min_rotations_left: DEFAULT_MIN_ROTATIONS_LEFT, multi_region: true }
    }
}

/// The gate, then the rotation: read the key, [`assess`] it, claim it, read and assess it
/// again, rotate, release the claim. `rotate` without `--force` comes here (an operator's
/// [`Scope`]); the Lambda runs the same two halves, [`admit`] and [`rotate_admitted`], so
/// that a skip needs neither the PIN nor the HSM.
pub async fn rotate_if_needed(
    aws: &Aws,
    rotator: &crate::rotation::Rotator<'_>,
    req: &crate::rotation::RotationRequest,
    params: &RuleParams,
    claim_id: &str,
    settle: StdDuration,
) -> Result<Outcome, RemediationError> {
    let scope = Scope::default();
    match admit(aws, req, params, &scope).await? {
        Admission::Skip(reason) => Ok(Outcome::Skipped(reason)),
        Admission::Due { key_arn, reason, .. } => {
            rotate_admitted(aws, rotator, req, params, &scope, &key_arn, &reason, claim_id, settle).await
        }
    }
}

/// The gate's first look at a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Skip(String),
    /// `usage`: what the key policy and grants say of the asking workload account.
    Due {
        key_arn: String,
        reason: String,
        usage: Option<Usage>,
    },
}

/// Reads the key and runs the gate: no write, no HSM.
pub async fn admit(
    aws: &Aws,
    req: &crate::rotation::RotationRequest,
    params: &RuleParams,
    scope: &Scope,
) -> Result<Admission, RemediationError> {
    Ok(match gate(aws, &req.key, params, req.required_tag.as_ref(), scope).await? {
        Ok((key_arn, reason, usage)) => Admission::Due { key_arn, reason, usage },
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
    scope: &Scope,
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
    let result = match gate(aws, &req.key, params, guard, scope).await {
        Ok(Ok((_, reason, _))) => {
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

/// `Ok(Ok((key ARN, why, usage)))` when the key needs rotating, `Ok(Err(reason))` to skip
/// it. `guard`: the tag a key must carry to be rotated at all (KRG_KEY_TAG_VALUE), checked
/// before the claim, which the rotation role may only write on guarded keys. Then, for a
/// workload's request, whether that account uses the key (refused if not, whatever the
/// key's age); then the need; then, for a key that is due, the quota (few rotations left
/// are refused). Every refusal comes before any write.
async fn gate(
    aws: &Aws,
    key: &str,
    params: &RuleParams,
    guard: Option<&(String, String)>,
    scope: &Scope,
) -> Result<Result<(String, String, Option<Usage>), String>, RemediationError> {
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
    let usage = match &scope.caller {
        None => None,
        Some(caller) => match usage::read(aws, &facts.key_arn, caller).await? {
            Usage::NotUsed(why) => return Err(RemediationError::Refused(why)),
            u => Some(u),
        },
    };
    // The gate judges a multi-Region primary like any key where the multi-Region path runs.
    let judged = if facts.multi_region && scope.multi_region {
        let mut single = facts.clone();
        single.multi_region = false;
        std::borrow::Cow::Owned(single)
    } else {
        std::borrow::Cow::Borrowed(&facts)
    };
    match assess(&judged, &on_demand, params, Utc::now()) {
        Need::Refuse(why) if facts.multi_region && !scope.multi_region => Err(RemediationError::Refused(format!(
            "{why} (this function: KRG_ROTATE_MULTI_REGION is not true; security-account.yaml RotateMultiRegionKeys)"
        ))),
        Need::Rotate(why) => {
            // A first import (PendingImport) spends no on-demand rotation.
            let used = match (&on_demand, facts.state.as_str()) {
                (_, "PendingImport") => None,
                (Fact::Known(dates), _) => Some(dates.len()),
                _ => None,
            };
            if let Some(few) = quota_check(&facts.key_arn, used, scope.min_rotations_left) {
                return Err(RemediationError::Refused(few));
            }
            Ok(Ok((facts.key_arn, why, usage)))
        }
        // Finishing a rotation already started spends no new one.
        Need::Resume(why) => Ok(Ok((facts.key_arn, why, usage))),
        Need::Skip(why) => Ok(Err(why)),
        Need::Refuse(why) => Err(RemediationError::Refused(why)),
        Need::Denied(d) => Err(RemediationError::AccessDenied { operation: d.action, message: d.hint }),
    }
}
