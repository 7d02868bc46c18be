//! The decision, and nothing else: protection + key facts + rule parameters + now → verdict.
//!
//! Pure and deterministic, so every branch is tested without a network. The order of the
//! checks follows the rule's specification (docs/rules.md, "The verdict"); the first failing
//! check decides, so an annotation names the most fundamental problem.
//!
//! No AWS types and no I/O: the facts come in as `key::KeyFacts`.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::key::{Expiry, Fact, KeyFacts, KeyLookup, KeyManager, KeyRef};
use crate::params::{RuleParams, MATERIAL_ID_TAG};
use crate::resource::Protection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compliance {
    Compliant,
    NonCompliant,
    NotApplicable,
}

impl Compliance {
    /// The ComplianceType string PutEvaluations expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "COMPLIANT",
            Compliance::NonCompliant => "NON_COMPLIANT",
            Compliance::NotApplicable => "NOT_APPLICABLE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub compliance: Compliance,
    /// 1 to 256 characters, always (Config's limit).
    pub annotation: String,
}

/// Config's limit on an annotation, in characters.
pub const MAX_ANNOTATION: usize = 256;

impl Verdict {
    pub fn compliant(why: impl Into<String>) -> Verdict {
        Verdict::new(Compliance::Compliant, why.into())
    }
    pub fn non_compliant(why: impl Into<String>) -> Verdict {
        Verdict::new(Compliance::NonCompliant, why.into())
    }
    pub fn not_applicable(why: impl Into<String>) -> Verdict {
        Verdict::new(Compliance::NotApplicable, why.into())
    }
    fn new(compliance: Compliance, annotation: String) -> Verdict {
        Verdict { compliance, annotation: fit_annotation(&annotation) }
    }
}

/// Clamps text into Config's 1–256 character annotation, marking a cut with "…".
pub fn fit_annotation(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "no details".into();
    }
    if text.chars().count() <= MAX_ANNOTATION {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_ANNOTATION - 1).collect();
    out.push('…');
    out
}

/// Tags and KMS dates may disagree by clock skew and time zones; a day absorbs both.
const TOLERANCE: Duration = Duration::days(1);

/// Decides one resource. `lookup` is the result for the key `protection` names (ignored
/// for protections without a key).
pub fn decide(protection: &Protection, lookup: Option<&KeyLookup>, p: &RuleParams, now: DateTime<Utc>) -> Verdict {
    const NOT_CMK: &str = "not encrypted with a customer managed KMS key";
    let key = match protection {
        Protection::Unencrypted(what) => return Verdict::non_compliant(format!("{NOT_CMK}: {what}")),
        Protection::S3Managed => {
            return Verdict::non_compliant(format!(
                "{NOT_CMK}: SSE-S3 (AES256) uses a key owned by S3; set SSE-KMS with a customer managed key"
            ))
        }
        Protection::S3ManagedByDefault => {
            // Never "unencrypted": S3 has encrypted every bucket with SSE-S3 since January 2023.
            return Verdict::non_compliant(
                "encrypted only with SSE-S3 (AES256, a key S3 owns): no default encryption is set, and S3 applies \
                 SSE-S3 to every bucket since January 2023; set SSE-KMS with a customer managed key",
            );
        }
        Protection::Unreadable(d) => {
            return Verdict::non_compliant(format!(
                "cannot read how the resource is encrypted: {} denied; {}",
                d.action, d.hint
            ))
        }
        Protection::AwsOwnedKey => {
            return Verdict::non_compliant(format!(
                "{NOT_CMK}: it uses an AWS-owned key; choose a customer managed key"
            ))
        }
        Protection::Kms(key) => key,
    };
    let name = short(key);
    if key.is_aws_managed_alias() {
        return aws_managed(&name, p);
    }
    let facts = match lookup {
        Some(KeyLookup::Found(f)) => f,
        Some(KeyLookup::AwsManagedAlias) => return aws_managed(&name, p),
        Some(KeyLookup::NotFound) => {
            // Only a bare id or alias is resolved in the resource's own account; an ARN
            // names its account, so "not found" then means it no longer exists.
            let why = if matches!(key, KeyRef::KeyArn(_) | KeyRef::AliasArn(_)) {
                "it was deleted (or, for an alias, the alias was deleted)"
            } else {
                "it was deleted, or it is in another account and the reference is not an ARN"
            };
            return Verdict::non_compliant(format!("KMS key {name} not found: {why}"));
        }
        Some(KeyLookup::Denied(d)) => {
            return Verdict::non_compliant(format!("cannot read KMS key {name}: {} denied; {}", d.action, d.hint))
        }
        None => return Verdict::non_compliant(format!("KMS key {name} was not looked up (internal error)")),
    };
    with_quota(judge_key(&name, facts, p, now), facts, p)
}

/// Few rotations left (issue 20): an imported key has 25 on-demand rotations for life, and
/// every completed rotation of its material is one of them (ListKeyRotations lists the first
/// import without a date). At `minRotationsLeft` or fewer the verdict says so, whatever it
/// decided, so that people plan an alias-swap or a new key in time; the security account
/// then no longer rotates the key automatically.
fn with_quota(v: Verdict, f: &KeyFacts, p: &RuleParams) -> Verdict {
    let Some(left) = on_demand_rotations_left(f) else { return v };
    if left > p.min_rotations_left {
        return v;
    }
    let note = format!("; few rotations left ({left} of {ON_DEMAND_QUOTA}): plan an alias-swap or a new key");
    let room = MAX_ANNOTATION.saturating_sub(note.chars().count());
    let head: String = if v.annotation.chars().count() > room {
        let mut h: String = v.annotation.chars().take(room.saturating_sub(1)).collect();
        h.push('…');
        h
    } else {
        v.annotation.clone()
    };
    Verdict { compliance: v.compliance, annotation: fit_annotation(&format!("{head}{note}")) }
}

/// On-demand rotations per key, for life (KMS Developer Guide; not raisable).
const ON_DEMAND_QUOTA: u32 = 25;

/// On-demand rotations an imported key has left: its completed rotations counted from
/// ListKeyRotations (an imported key rotates only on demand). `None` when the history was
/// not read, or for keys whose material KMS generates (automatic rotation is not counted).
pub fn on_demand_rotations_left(f: &KeyFacts) -> Option<u32> {
    if f.origin != "EXTERNAL" {
        return None;
    }
    match &f.rotations {
        Fact::Known(rs) => {
            let used = rs.iter().filter(|r| r.date.is_some()).count();
            Some(ON_DEMAND_QUOTA.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX)))
        }
        _ => None,
    }
}

fn aws_managed(name: &str, p: &RuleParams) -> Verdict {
    if p.allow_aws_managed_keys {
        Verdict::compliant(format!("AWS-managed key {name}: rotated by AWS every year (allowAwsManagedKeys=true)"))
    } else {
        Verdict::non_compliant(format!(
            "not encrypted with a customer managed KMS key: {name} is AWS-managed (set allowAwsManagedKeys=true to accept it)"
        ))
    }
}

fn judge_key(name: &str, f: &KeyFacts, p: &RuleParams, now: DateTime<Utc>) -> Verdict {
    if f.manager == KeyManager::Aws {
        return aws_managed(name, p);
    }
    if f.state != "Enabled" {
        let hint = match f.state.as_str() {
            // Only the material the key had brings its ciphertext back; new material would
            // not, so the advice is never a rotation once there was material.
            "PendingImport" if f.had_material() => format!(
                "its key material expired or was deleted; import the same material again from the HSM: \
                 kms-rotation-guard reimport --key {name}"
            ),
            "PendingImport" => {
                format!("no key material imported yet; import its first: kms-rotation-guard rotate --key {name}")
            }
            "Disabled" => "enable it, or re-encrypt the resource with an enabled key".into(),
            "PendingDeletion" => "cancel the deletion (kms:CancelKeyDeletion) or re-encrypt".into(),
            "Unavailable" => "its custom key store is disconnected".into(),
            _ => "the key cannot be used in this state".into(),
        };
        return Verdict::non_compliant(format!("KMS key {name} is {}: {hint}", f.state));
    }
    if f.origin == "AWS_KMS" {
        // KMS generated the material: its age is a fact, and no tag can speak for it.
        // Automatic rotation first happens one period after it is enabled, so "enabled"
        // alone says nothing about the age of the material in use today.
        match &f.rotations {
            Fact::Known(_) => return judge_generated_material(name, f, p, now),
            Fact::Denied(d) => {
                return Verdict::non_compliant(format!(
                    "cannot tell the age of KMS key {name}'s material: {} denied; {}",
                    d.action, d.hint
                ))
            }
            // An endpoint without ListKeyRotations (an emulator): the tag decides, below.
            Fact::Unsupported(_) | Fact::NotForThisKey(_) | Fact::NotRead => {}
        }
    }

    // Before the tag: an expiring material is an outage on a date, whatever the tag says.
    if let Some(v) = expiry_verdict(name, f, p, now) {
        return v;
    }

    let tags = match &f.tags {
        Fact::Known(t) => t,
        Fact::Denied(d) => {
            return Verdict::non_compliant(format!(
                "cannot read tags of KMS key {name}: {} denied; {}",
                d.action, d.hint
            ))
        }
        Fact::Unsupported(why) | Fact::NotForThisKey(why) => {
            return Verdict::non_compliant(format!("cannot read tags of KMS key {name}: {why}"))
        }
        Fact::NotRead => {
            return Verdict::non_compliant(format!("tags of KMS key {name} were not read (internal error)"))
        }
    };
    let tag = &p.rotation_tag_key;
    let Some(raw) = tags.get(tag) else {
        return Verdict::non_compliant(format!(
            "KMS key {name} has no {tag} tag: set it to the date its key material was last imported (YYYY-MM-DD)"
        ));
    };
    let Some(rotated) = parse_rotation_date(raw) else {
        let shown: String = raw.chars().take(40).collect();
        return Verdict::non_compliant(format!(
            "KMS key {name}: tag {tag}={shown:?} is not a date (use YYYY-MM-DD or RFC 3339)"
        ));
    };
    if now.checked_add_signed(TOLERANCE).is_some_and(|limit| rotated > limit) {
        return Verdict::non_compliant(format!(
            "KMS key {name}: tag {tag} says {} which is in the future",
            day(rotated)
        ));
    }

    if p.verify_tag_against_kms {
        match &f.rotations {
            Fact::Denied(d) => {
                return Verdict::non_compliant(format!(
                    "cannot verify tag {tag} of KMS key {name}: {} denied; {} (or set verifyTagAgainstKms=false)",
                    d.action, d.hint
                ))
            }
            Fact::Known(_) => {
                if let Some(newest) = f.newest_material_date() {
                    if newest.checked_add_signed(TOLERANCE).is_some_and(|limit| rotated > limit) {
                        return Verdict::non_compliant(format!(
                            "KMS key {name}: tag says {}, newest key material is from {}; KMS saw no rotation since",
                            day(rotated),
                            day(newest)
                        ));
                    }
                }
            }
            // Unsupported: the endpoint cannot list rotations (not AWS); NotForThisKey: a
            // custom key store key, which KMS never rotates. The material id check below
            // still holds the tag to account.
            Fact::Unsupported(_) | Fact::NotForThisKey(_) | Fact::NotRead => {}
        }
        if let (Some(claimed), Some(current)) = (tags.get(MATERIAL_ID_TAG), f.current_material_id.as_deref()) {
            if claimed != current {
                return Verdict::non_compliant(format!(
                    "KMS key {name}: tag {MATERIAL_ID_TAG} says {}, but the current key material is {}",
                    clip(claimed, 70),
                    clip(current, 70)
                ));
            }
        }
    }

    let age = now.signed_duration_since(rotated).num_days().max(0);
    let limit = p.max_key_age_days;
    // Said up front, so a clipped annotation still carries it.
    let store = if f.in_custom_key_store() { " (custom key store: KMS cannot rotate it)" } else { "" };
    if age > limit {
        Verdict::non_compliant(format!(
            "KMS key {name}{store} last rotated {}, {age} days ago, limit {limit} days",
            day(rotated)
        ))
    } else {
        let due = rotated.checked_add_signed(Duration::days(limit)).map(day).unwrap_or_else(|| "never".into());
        Verdict::compliant(format!("KMS key {name}{store} rotated {}, {age} days ago, next due {due}", day(rotated)))
    }
}

/// The verdict on expiring imported material, if that decides: the earliest expiry of ANY
/// permanently associated material (KeyFacts::earliest_expiry) within `expiryWarningDays`.
/// The advice is a re-import of that same material with a later date, which KMS allows while
/// the material is still imported (ImportKeyMaterial: "set or update the expiration model and
/// expiration date"); a rotation would not help: the old material stays associated and still
/// expires on the same date.
fn expiry_verdict(name: &str, f: &KeyFacts, p: &RuleParams, now: DateTime<Utc>) -> Option<Verdict> {
    match f.earliest_expiry() {
        Expiry::Never => None,
        Expiry::DateUnknown { material } => Some(Verdict::non_compliant(format!(
            "key material {}of KMS key {name} expires but KMS did not return the date (ValidTo); check it with \
             kms-rotation-guard materials --key {name}",
            material.map(|m| format!("{} ", clip(&m, 64))).unwrap_or_default()
        ))),
        Expiry::On { valid_to, .. } if valid_to.signed_duration_since(now) > Duration::days(p.expiry_warning_days) => {
            None
        }
        Expiry::On { material, valid_to } => {
            let left = valid_to.signed_duration_since(now).num_days().max(0);
            // ImportKeyMaterial's ValidTo may be at most 365 days after the request: a day
            // less leaves room for the time between this evaluation and the operator's run.
            let new_date = now.checked_add_signed(Duration::days(364)).map(day).unwrap_or_default();
            Some(Verdict::non_compliant(expiry_annotation(name, material.as_deref(), valid_to, left, &new_date)))
        }
    }
}

/// The command that gives expiring material a later date: a re-import of that same material
/// from the HSM that keeps it (`material` `None`: every expiring material of the key).
/// ImportKeyMaterial's ValidTo may be at most 365 days after the request: a day less leaves
/// room for the time between this advice and the operator's run.
pub fn reimport_command(key: &str, material: Option<&str>, now: DateTime<Utc>) -> String {
    let new_date = now.checked_add_signed(Duration::days(364)).map(day).unwrap_or_default();
    match material {
        Some(m) => format!("kms-rotation-guard reimport --key {key} --key-material-id {m} --valid-to {new_date}"),
        None => format!("kms-rotation-guard reimport --key {key} --valid-to {new_date}"),
    }
}

/// The longest expiry annotation that fits Config's 256 characters: the material id in full
/// when it fits, else a 16-digit prefix (`reimport` accepts a unique prefix).
fn expiry_annotation(name: &str, material: Option<&str>, valid_to: DateTime<Utc>, left: i64, new_date: &str) -> String {
    let date = day(valid_to);
    let Some(id) = material else {
        return format!(
            "KMS key {name} stops working on {date} (in {left} days), when its imported key material expires; \
             run kms-rotation-guard reimport --key {name} --valid-to {new_date}"
        );
    };
    let id = clip(id, 64);
    let prefix: String = id.chars().take(16).collect();
    let command =
        |id: &str| format!("kms-rotation-guard reimport --key {name} --key-material-id {id} --valid-to {new_date}");
    let candidates = [
        format!(
            "key material {id} of KMS key {name} expires on {date} (in {left} days), and the whole key with it; run {}",
            command(&id)
        ),
        // The key is named once, in the command.
        format!("key material expires {date} (in {left} days), then the KMS key is unusable; run {}", command(&id)),
        format!("key material expires {date} (in {left} days), then the KMS key is unusable; run {}", command(&prefix)),
        format!("key material expires {date} (in {left} days); run {}", command(&prefix)),
    ];
    let last = candidates[3].clone();
    candidates.into_iter().find(|c| c.chars().count() <= MAX_ANNOTATION).unwrap_or(last)
}

/// An AWS_KMS key: the age of its current material (the newest ListKeyRotations date,
/// else CreationDate) against the limit, with the next automatic rotation when enabled.
fn judge_generated_material(name: &str, f: &KeyFacts, p: &RuleParams, now: DateTime<Utc>) -> Verdict {
    let Some(material) = f.newest_material_date() else {
        return Verdict::non_compliant(format!(
            "KMS key {name}: KMS returned neither a rotation date nor a creation date"
        ));
    };
    let age = now.signed_duration_since(material).num_days().max(0);
    let limit = p.max_key_age_days;
    let next = match &f.auto_rotation {
        Fact::Known(a) if a.enabled => match a.next_rotation {
            Some(t) => format!("automatic rotation next on {}", day(t)),
            None => format!("automatic rotation every {} days", a.period_days.unwrap_or(365)),
        },
        Fact::Known(_) => "automatic rotation is off".to_string(),
        _ => "automatic rotation status unknown".to_string(),
    };
    if age > limit {
        Verdict::non_compliant(format!(
            "KMS key {name}: current key material is from {}, {age} days old, limit {limit} days; {next}",
            day(material)
        ))
    } else {
        Verdict::compliant(format!(
            "KMS key {name}: current key material is from {}, {age} days old, limit {limit} days; {next}",
            day(material)
        ))
    }
}

/// Parses a rotation tag: `YYYY-MM-DD` (midnight UTC) or RFC 3339 with `Z` or an offset.
pub fn parse_rotation_date(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.len() > 64 {
        return None;
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        // A bare date must be exactly YYYY-MM-DD: chrono also accepts "2025-1-5".
        if s.len() == 10 {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Annotations name the key as the resource referenced it, clipped so the verdict text
/// always fits in 256 characters.
fn short(key: &KeyRef) -> String {
    clip(key.short(), 80)
}

fn clip(s: &str, max: usize) -> String {
    crate::key::reference::truncate_chars(s, max)
}

#[cfg(test)]
mod tests;
