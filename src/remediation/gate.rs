//! The gate's decision, pure: key facts + the rule's parameters + now → [`Need`]. No AWS
//! types and no I/O here (`reads` fetches the facts), so every answer is unit-tested.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::ResourceKind;
use crate::key::{Denial, Expiry, Fact, KeyFacts, KeyLookup, KeyManager, KeyRef};
use crate::params::RuleParams;
use crate::resource::Protection;
use crate::rotation::{Strategy, PENDING_TAG};
use crate::verdict::{self, Compliance};

/// After an ON_DEMAND rotation, no other for this long.
pub const ON_DEMAND_COOLDOWN: Duration = Duration::hours(24);

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
        // Its material expired or was deleted: only that same material brings its ciphertext
        // back, and `rotate` would refuse the key. Never a rotation.
        "PendingImport" if facts.had_material() => {
            return Need::Skip(format!(
                "{key} is PendingImport: its key material expired or was deleted; not rotated (new material would \
                 not decrypt its ciphertext): import the same material again from the HSM: \
                 kms-rotation-guard reimport --key {key}"
            ))
        }
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
    // Expiring material is never answered with a rotation: the expiring material stays
    // associated (NON_CURRENT) and still expires on the same date, taking the whole key with it,
    // and a rotation would spend one of 25. The fix is a re-import with a later date.
    match facts.earliest_expiry() {
        Expiry::On { material, valid_to }
            if valid_to.signed_duration_since(now) <= Duration::days(p.expiry_warning_days) =>
        {
            return Need::Skip(format!(
                "key material {} of {key} expires on {}: not rotated (a rotation would leave it associated, \
                 expiring on the same date); give it a later date: {}",
                material.as_deref().unwrap_or("(the earliest to expire)"),
                valid_to.format("%Y-%m-%dT%H:%M:%SZ"),
                verdict::reimport_command(key, material.as_deref(), now)
            ));
        }
        Expiry::DateUnknown { material } => {
            return Need::Skip(format!(
                "key material {}of {key} expires but KMS gave no date (ValidTo): not rotated; check it with \
                 kms-rotation-guard materials --key {key}",
                material.map(|m| format!("{m} ")).unwrap_or_default()
            ));
        }
        _ => {}
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
