//! `retire --key K --grace-days N`: take the key an alias swap replaced out of use, then
//! delete it, reversible first. Run with the retirement role (retirement.yaml), which is
//! the only role with DisableKey and ScheduleKeyDeletion. Each run does one step:
//!
//! 1. K is Enabled: check, in order, that a successor is recorded (K's
//!    `KmsRotationGuardSuccessor`, confirmed by the successor's `KmsRotationGuardPredecessor`)
//!    and no alias still names K; that no resource uses K per the latest scan (at most a
//!    day old, and complete); that CloudTrail shows no successful cryptographic use of K in
//!    the last N days. Then tag the retirement and DisableKey — reversible: `rollback --key K`.
//! 2. K is Disabled: wait until N days after it was disabled; then check again (and that
//!    nobody tried to use it meanwhile: a failed call on a disabled key is someone who still
//!    needs it), and ScheduleKeyDeletion with the maximum waiting period, 30 days.
//! 3. K is PendingDeletion: say when KMS deletes it (CancelKeyDeletion stops it).
//! 4. KMS has deleted K: destroy the HSM objects labelled with K's ARN (only that key's).
//!
//! [`decide`] is pure; [`run`] gathers the facts and does the step.

use chrono::{DateTime, Duration, Utc};

use super::trail::{self, KeyCall};
use super::usage::{ResourceUsage, UsageRow};
use super::{aws_err, stamp, RunbookError, RETIREMENT_TAG};
use crate::aws::Aws;
use crate::key::KeyRef;
use crate::rotation::hsm::KeyMaterialSource;
use crate::rotation::{PREDECESSOR_TAG, SUCCESSOR_TAG};

/// KMS's longest waiting period before it deletes a key (ScheduleKeyDeletion reference:
/// 7 to 30 days): the most time to notice a mistake and cancel.
pub const MAX_WAITING_DAYS: i32 = 30;
/// The latest scan must be at most this old.
pub const SCAN_MAX_AGE: Duration = Duration::days(1);

/// Everything [`decide`] needs, read before it.
#[derive(Debug, Clone)]
pub struct RetireFacts {
    pub key_arn: String,
    /// `None`: KMS has no such key (deleted).
    pub state: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Aliases that still point at the key.
    pub aliases: Vec<String>,
    /// The recorded successor: its ARN and whether it names this key as its predecessor.
    pub successor: Option<(String, bool)>,
    /// The latest scan: when it ran, the resources on this key, and what it could not see.
    pub scan: Option<ScanEvidence>,
    /// The newest successful use in the grace window (CloudTrail).
    pub last_use: Option<KeyCall>,
    /// Failed calls since the key was disabled (CloudTrail).
    pub failed_since_disable: Vec<KeyCall>,
    /// PendingDeletion: when KMS deletes the key.
    pub deletion_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ScanEvidence {
    pub scan_time: DateTime<Utc>,
    /// Where the time came from: "scanTime" of the export, or the file's modification time.
    pub time_source: String,
    pub users: Vec<UsageRow>,
    pub blind_spots: Vec<String>,
}

impl ScanEvidence {
    pub fn of(usage: &ResourceUsage, key_arn: &str, file_time: Option<DateTime<Utc>>) -> Option<ScanEvidence> {
        let (scan_time, time_source) = match (usage.scan_time, file_time) {
            (Some(t), _) => (t, "the export's scanTime".to_string()),
            (None, Some(t)) => (t, "the file's modification time".to_string()),
            (None, None) => return None,
        };
        Some(ScanEvidence {
            scan_time,
            time_source,
            users: usage.users_of(key_arn).into_iter().cloned().collect(),
            blind_spots: usage.blind_spots.clone(),
        })
    }
}

/// The one step a run takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Refuse(String),
    /// Tag the retirement, then DisableKey.
    Disable,
    /// The grace period runs until then.
    Wait {
        until: DateTime<Utc>,
    },
    /// ScheduleKeyDeletion with [`MAX_WAITING_DAYS`].
    ScheduleDeletion,
    /// KMS deletes the key then.
    PendingDeletion {
        on: Option<DateTime<Utc>>,
    },
    /// KMS deleted the key: destroy its HSM objects.
    DestroyHsmObjects,
}

/// When the key was disabled for retirement, and the grace it was given: the tag
/// `disabled <time> grace <N>d`.
pub fn disabled_at(tag: &str) -> Option<(DateTime<Utc>, i64)> {
    let mut parts = tag.split_whitespace();
    (parts.next()? == "disabled").then_some(())?;
    let at = crate::event::parse_time(parts.next()?)?;
    (parts.next()? == "grace").then_some(())?;
    let days = parts.next()?.strip_suffix('d')?.parse().ok()?;
    Some((at, days))
}

/// The checks that hold before disabling and again before deletion (in the order).
fn checks(f: &RetireFacts, grace_days: i64, now: DateTime<Utc>) -> Result<(), String> {
    let Some((successor, confirmed)) = &f.successor else {
        return Err(format!(
            "no successor is recorded for {} ({SUCCESSOR_TAG}): only a key that an alias swap replaced is retired",
            f.key_arn
        ));
    };
    if !confirmed {
        return Err(format!(
            "{successor} does not name {} as its predecessor ({PREDECESSOR_TAG}): the records disagree",
            f.key_arn
        ));
    }
    if !f.aliases.is_empty() {
        return Err(format!("{} still point(s) at {}: it is in use by name", f.aliases.join(", "), f.key_arn));
    }
    let Some(scan) = &f.scan else {
        return Err("no scan given: pass the latest `scan --format json` export (--resources FILE)".into());
    };
    if now.signed_duration_since(scan.scan_time) > SCAN_MAX_AGE {
        return Err(format!(
            "the scan is from {} ({}), more than a day old: scan again",
            stamp(scan.scan_time),
            scan.time_source
        ));
    }
    if !scan.users.is_empty() {
        let users: Vec<String> =
            scan.users.iter().take(5).map(|u| format!("{} {} {}", u.account, u.resource_type, u.resource_id)).collect();
        return Err(format!(
            "{} resource(s) still use {} per the scan: {}{}",
            scan.users.len(),
            f.key_arn,
            users.join("; "),
            if scan.users.len() > 5 { "; …" } else { "" }
        ));
    }
    if !scan.blind_spots.is_empty() {
        return Err(format!(
            "the scan did not see everything, so it cannot show that nothing uses the key: {}",
            scan.blind_spots.join("; ")
        ));
    }
    if let Some(c) = &f.last_use {
        return Err(format!("CloudTrail shows {} used in the last {grace_days} days: {}", f.key_arn, c.line()));
    }
    Ok(())
}

/// Pure: the step this run takes.
pub fn decide(f: &RetireFacts, grace_days: i64, now: DateTime<Utc>) -> Step {
    match f.state.as_deref() {
        None => Step::DestroyHsmObjects,
        Some("PendingDeletion") => Step::PendingDeletion { on: f.deletion_date },
        Some("Enabled") => match checks(f, grace_days, now) {
            Ok(()) => Step::Disable,
            Err(why) => Step::Refuse(why),
        },
        Some("Disabled") => {
            let Some((at, given)) = f.tags.get(RETIREMENT_TAG).and_then(|t| disabled_at(t)) else {
                return Step::Refuse(format!(
                    "{} is Disabled, but not by `retire` (no {RETIREMENT_TAG} tag): enable it \
                     (rollback --key {}) and retire it from the start",
                    f.key_arn, f.key_arn
                ));
            };
            let until = at + Duration::days(grace_days.max(given));
            if now < until {
                return Step::Wait { until };
            }
            if let Some(c) = f.failed_since_disable.first() {
                return Step::Refuse(format!(
                    "{} someone tried to use {} since it was disabled: {}; it is still needed: \
                     `rollback --key {}` re-enables it",
                    f.failed_since_disable.len(),
                    f.key_arn,
                    c.line(),
                    f.key_arn
                ));
            }
            match checks(f, grace_days, now) {
                Ok(()) => Step::ScheduleDeletion,
                Err(why) => Step::Refuse(why),
            }
        }
        Some(other) => Step::Refuse(format!("{} is {other}: only Enabled or Disabled keys are retired", f.key_arn)),
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetireReport {
    pub key_arn: String,
    /// disabled, waiting, deletion-scheduled, pending-deletion, hsm-objects-destroyed, refused.
    pub outcome: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destroyed: Vec<String>,
}

/// Gathers the facts about `key`, decides, and takes the step.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    aws: &Aws,
    own_account: &str,
    key: &str,
    grace_days: i64,
    usage: Option<(&ResourceUsage, Option<DateTime<Utc>>)>,
    source: Option<&dyn KeyMaterialSource>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<RetireReport, RunbookError> {
    if !(1..=trail::HISTORY_DAYS).contains(&grace_days) {
        return Err(RunbookError::Input(format!(
            "--grace-days {grace_days}: give 1 to {} (CloudTrail's event history covers {} days)",
            trail::HISTORY_DAYS,
            trail::HISTORY_DAYS
        )));
    }
    let reference = KeyRef::parse(key).map_err(|e| RunbookError::Input(e.to_string()))?;
    if matches!(reference, KeyRef::AliasName(_) | KeyRef::AliasArn(_)) {
        return Err(RunbookError::Input(
            "give the replaced key's id or ARN, not an alias: an alias names the key in use".into(),
        ));
    }
    let Some(k) = super::rollback::read_key(aws, key).await? else {
        // Deleted, or never here: only an ARN of this account and Region is taken as deleted.
        let KeyRef::KeyArn(a) = &reference else {
            return Err(RunbookError::Input(format!(
                "{key} not found: after KMS deleted a key, give its full ARN so its HSM objects can be found"
            )));
        };
        if a.account != own_account || a.region != aws.region() {
            return Err(RunbookError::Input(format!(
                "{key} is not a key of this account and Region ({own_account}, {}): run retire there",
                aws.region()
            )));
        }
        let facts = RetireFacts {
            key_arn: key.to_string(),
            state: None,
            tags: Default::default(),
            aliases: vec![],
            successor: None,
            scan: None,
            last_use: None,
            failed_since_disable: vec![],
            deletion_date: None,
        };
        return take(aws, &facts, decide(&facts, grace_days, now), grace_days, source, dry_run, now).await;
    };
    let successor = match k.tags.get(SUCCESSOR_TAG) {
        Some(s) => match super::rollback::read_key(aws, s).await? {
            Some(sk) => Some((sk.arn.clone(), sk.tags.get(PREDECESSOR_TAG) == Some(&k.arn))),
            None => Some((s.clone(), false)),
        },
        None => None,
    };
    let aliases = super::watch::aliases_of(aws, &k.id).await?;
    let scan = usage.and_then(|(u, file_time)| ScanEvidence::of(u, &k.arn, file_time));
    let mut facts = RetireFacts {
        key_arn: k.arn.clone(),
        state: Some(k.state.clone()),
        tags: k.tags.clone(),
        aliases,
        successor,
        scan,
        last_use: None,
        failed_since_disable: vec![],
        deletion_date: None,
    };
    if k.state == "PendingDeletion" {
        let m = aws.kms().describe_key().key_id(&k.arn).send().await.map_err(aws_err("kms:DescribeKey"))?;
        facts.deletion_date = m.key_metadata().and_then(|m| m.deletion_date()).and_then(crate::aws::to_chrono);
    }
    // CloudTrail only when the cheaper checks passed: it is the slowest question.
    let first = decide(&facts, grace_days, now);
    if matches!(first, Step::Disable | Step::ScheduleDeletion) {
        facts.last_use = trail::last_successful_use(aws, &k.arn, now - Duration::days(grace_days), now).await?;
        if let Some((at, _)) = k.tags.get(RETIREMENT_TAG).and_then(|t| disabled_at(t)) {
            facts.failed_since_disable = trail::failures(aws, &k.arn, at, now).await?;
            // On a disabled key every call fails; any of them is someone who still needs it.
            facts.failed_since_disable.retain(|c| c.error_code.is_some() && trail::cryptographic(&c.name));
        }
    }
    let step = decide(&facts, grace_days, now);
    take(aws, &facts, step, grace_days, source, dry_run, now).await
}

async fn take(
    aws: &Aws,
    f: &RetireFacts,
    step: Step,
    grace_days: i64,
    source: Option<&dyn KeyMaterialSource>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<RetireReport, RunbookError> {
    let key = f.key_arn.clone();
    let report = |outcome: &str, message: String| RetireReport {
        key_arn: key.clone(),
        outcome: outcome.into(),
        message,
        until: None,
        destroyed: vec![],
    };
    let verb = if dry_run { "would be" } else { "is" };
    match step {
        Step::Refuse(why) => Err(RunbookError::Refused(why)),
        Step::Wait { until } => Ok(RetireReport {
            until: Some(until),
            ..report(
                "waiting",
                format!("{key} is disabled; its grace period runs until {}: run retire again then", stamp(until)),
            )
        }),
        Step::PendingDeletion { on } => Ok(report(
            "pending-deletion",
            format!(
                "KMS deletes {key} on {}; `aws kms cancel-key-deletion` (or rollback --key {key}) stops it until then; \
                 after it, run retire again with --hsm to destroy its HSM objects",
                on.map(stamp).unwrap_or_else(|| "(date unknown)".into())
            ),
        )),
        Step::Disable => {
            if !dry_run {
                let value = format!("disabled {} grace {grace_days}d", stamp(now));
                let tag = aws_sdk_kms::types::Tag::builder()
                    .tag_key(RETIREMENT_TAG)
                    .tag_value(value)
                    .build()
                    .expect("key and value set");
                aws.kms().tag_resource().key_id(&key).tags(tag).send().await.map_err(aws_err("kms:TagResource"))?;
                aws.kms().disable_key().key_id(&key).send().await.map_err(aws_err("kms:DisableKey"))?;
                tracing::info!(target: "audit", key = %key, grace_days, "retirement: key disabled");
            }
            Ok(RetireReport {
                until: Some(now + Duration::days(grace_days)),
                ..report(
                    "disabled",
                    format!(
                        "{key} {verb} disabled (reversible: rollback --key {key}); after {grace_days} days run retire \
                         again to schedule its deletion"
                    ),
                )
            })
        }
        Step::ScheduleDeletion => {
            let mut on = None;
            if !dry_run {
                let out = aws
                    .kms()
                    .schedule_key_deletion()
                    .key_id(&key)
                    .pending_window_in_days(MAX_WAITING_DAYS)
                    .send()
                    .await
                    .map_err(aws_err("kms:ScheduleKeyDeletion"))?;
                on = out.deletion_date().and_then(crate::aws::to_chrono);
                tracing::info!(target: "audit", key = %key, waiting_days = MAX_WAITING_DAYS, "retirement: deletion scheduled");
            }
            Ok(RetireReport {
                until: on,
                ..report(
                    "deletion-scheduled",
                    format!(
                        "{key} {verb} scheduled for deletion in {MAX_WAITING_DAYS} days{}; CancelKeyDeletion stops it until then",
                        on.map(|d| format!(" ({})", stamp(d))).unwrap_or_default()
                    ),
                )
            })
        }
        Step::DestroyHsmObjects => {
            let Some(source) = source.filter(|s| s.keeps_material()) else {
                return Err(RunbookError::Refused(format!(
                    "KMS has deleted {key}: run retire again with the HSM (--hsm pkcs11 …) to destroy the objects \
                     that kept its material"
                )));
            };
            let kept = source.kept_materials(&key)?.into_iter().filter(|k| k.key_arn == key).count();
            let destroyed = if dry_run {
                vec![]
            } else {
                source.destroy_kept(&key)?.into_iter().map(|k| k.to_string()).collect::<Vec<_>>()
            };
            Ok(RetireReport {
                destroyed: destroyed.clone(),
                ..report(
                    "hsm-objects-destroyed",
                    format!(
                        "KMS has deleted {key}; {} HSM object(s) labelled with its ARN {}",
                        if dry_run { kept } else { destroyed.len() },
                        if dry_run { "would be destroyed" } else { "destroyed" }
                    ),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests;
