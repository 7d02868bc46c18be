//! The security account's rotation policy, and what a request may ask of it (issue 20).
//!
//! The security account decides; a workload account can only ask. The policy comes from the
//! security account's own configuration (security-account.yaml's parameters, in the rotation
//! function's environment), never from a request:
//! - a request may ask for a *stricter* threshold (a key due sooner), but never sooner than
//!   `minRotationIntervalDays` (the floor): below it the request is refused;
//! - a looser threshold is not an error: the policy's applies;
//! - `rotationTagKey` and `strategy` that differ from the policy are refused;
//! - from a workload account only "judge this key and rotate it if due" is accepted:
//!   re-import and alias-swap are the operator's (and forcing is the CLI's alone: no
//!   request can carry it);
//! - a due key with `minRotationsLeft` on-demand rotations left or fewer is not rotated
//!   automatically ([`quota_check`]).
//!
//! Everything here is pure: parameters and the request in, a decision out.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::params::RuleParams;
use crate::rotation::{Strategy, ON_DEMAND_QUOTA};

/// Defaults of the policy, as security-account.yaml's parameters.
pub const DEFAULT_MIN_ROTATIONS_LEFT: u32 = 5;
pub const DEFAULT_MIN_ROTATION_INTERVAL_DAYS: i64 = 90;

/// The security account's rotation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPolicy {
    pub max_key_age_days: i64,
    pub expiry_warning_days: i64,
    pub rotation_tag_key: String,
    pub strategy: Strategy,
    /// A due key with this many on-demand rotations left (of 25) or fewer is not rotated.
    pub min_rotations_left: u32,
    /// The floor: no request can make a key due before its material is this many days old.
    pub min_rotation_interval_days: i64,
    pub verify_tag_against_kms: bool,
    /// Break glass (KRG_ALLOW_ALIAS_SWAP): an operator may alias-swap.
    pub allow_alias_swap: bool,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        let p = RuleParams::default();
        SecurityPolicy {
            max_key_age_days: p.max_key_age_days,
            expiry_warning_days: p.expiry_warning_days,
            rotation_tag_key: p.rotation_tag_key,
            strategy: Strategy::InPlace,
            min_rotations_left: DEFAULT_MIN_ROTATIONS_LEFT,
            min_rotation_interval_days: DEFAULT_MIN_ROTATION_INTERVAL_DAYS,
            verify_tag_against_kms: p.verify_tag_against_kms,
            allow_alias_swap: false,
        }
    }
}

/// The environment variables of the policy (security-account.yaml sets each).
pub const POLICY_VARIABLES: [&str; 8] = [
    "KRG_MAX_KEY_AGE_DAYS",
    "KRG_EXPIRY_WARNING_DAYS",
    "KRG_ROTATION_TAG_KEY",
    "KRG_STRATEGY",
    "KRG_MIN_ROTATIONS_LEFT",
    "KRG_MIN_ROTATION_INTERVAL_DAYS",
    "KRG_VERIFY_TAG_AGAINST_KMS",
    "KRG_ALLOW_ALIAS_SWAP",
];

const MAX_DAYS: i64 = 36_500;

impl SecurityPolicy {
    /// From the function's environment (any variable source; tests pass a map). A variable
    /// that is not set takes its default; one that is set wrong is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<SecurityPolicy, String> {
        let get = |n: &str| get(n).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let d = SecurityPolicy::default();
        let days = |name: &str, default: i64, min: i64| -> Result<i64, String> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if (min..=MAX_DAYS).contains(&n) => Ok(n),
                    _ => Err(format!("{name} must be a whole number of days from {min} to {MAX_DAYS}, not {v:?}")),
                },
            }
        };
        let flag = |name: &str, default: bool| -> Result<bool, String> {
            match get(name).map(|v| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if v == "true" => Ok(true),
                Some(v) if v == "false" => Ok(false),
                Some(v) => Err(format!("{name} must be true or false, not {v:?}")),
            }
        };
        let strategy = match get("KRG_STRATEGY") {
            None => d.strategy,
            Some(v) => v.parse().map_err(|_| format!("KRG_STRATEGY must be in-place or alias-swap, not {v:?}"))?,
        };
        let min_rotations_left = match get("KRG_MIN_ROTATIONS_LEFT") {
            None => d.min_rotations_left,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n <= ON_DEMAND_QUOTA => n,
                _ => {
                    return Err(format!(
                        "KRG_MIN_ROTATIONS_LEFT must be a number from 0 to {ON_DEMAND_QUOTA}, not {v:?}"
                    ))
                }
            },
        };
        let policy = SecurityPolicy {
            max_key_age_days: days("KRG_MAX_KEY_AGE_DAYS", d.max_key_age_days, 1)?,
            expiry_warning_days: days("KRG_EXPIRY_WARNING_DAYS", d.expiry_warning_days, 0)?,
            rotation_tag_key: get("KRG_ROTATION_TAG_KEY").unwrap_or(d.rotation_tag_key),
            strategy,
            min_rotations_left,
            min_rotation_interval_days: days("KRG_MIN_ROTATION_INTERVAL_DAYS", d.min_rotation_interval_days, 1)?,
            verify_tag_against_kms: flag("KRG_VERIFY_TAG_AGAINST_KMS", d.verify_tag_against_kms)?,
            allow_alias_swap: flag("KRG_ALLOW_ALIAS_SWAP", d.allow_alias_swap)?,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// A policy that contradicts itself is a configuration error, not a refusal.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_rotation_interval_days > self.due_days() {
            return Err(format!(
                "KRG_MIN_ROTATION_INTERVAL_DAYS ({}) is above the policy's own due age, KRG_MAX_KEY_AGE_DAYS − \
                 KRG_EXPIRY_WARNING_DAYS = {} − {} = {} days: lower MinRotationIntervalDays or raise MaxKeyAgeDays",
                self.min_rotation_interval_days,
                self.max_key_age_days,
                self.expiry_warning_days,
                self.due_days()
            ));
        }
        if self.strategy == Strategy::AliasSwap && !self.allow_alias_swap {
            return Err("KRG_STRATEGY is alias-swap but KRG_ALLOW_ALIAS_SWAP is not true".into());
        }
        Ok(())
    }

    /// The age at which the policy's rotation is due: maxKeyAgeDays − expiryWarningDays,
    /// never below a day (as the gate computes it).
    pub fn due_days(&self) -> i64 {
        (self.max_key_age_days - self.expiry_warning_days).max(1)
    }

    /// The rule parameters the gate judges with under this policy.
    pub fn rule_params(&self) -> RuleParams {
        RuleParams {
            max_key_age_days: self.max_key_age_days,
            rotation_tag_key: self.rotation_tag_key.clone(),
            key_reader_role_name: None,
            allow_aws_managed_keys: false,
            verify_tag_against_kms: self.verify_tag_against_kms,
            expiry_warning_days: self.expiry_warning_days,
            min_rotations_left: self.min_rotations_left,
            ..RuleParams::default()
        }
    }
}

/// Who asks. The account of a workload request comes from the transport (the EventBridge
/// envelope's `account`, which EventBridge sets), never from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// A workload account, through the request bus.
    Workload { account: String },
    /// A principal of the security account itself, invoking the function directly (the
    /// function has no resource-policy grant for anyone else).
    Operator,
}

impl Requester {
    pub fn label(&self) -> String {
        match self {
            Requester::Workload { account } => format!("workload account {account}"),
            Requester::Operator => "operator (security account)".into(),
        }
    }
}

/// What a request asks for, as parsed from its payload (nothing looked up yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    /// `action: reimport`.
    pub reimport: bool,
    /// The strategy the request named, if it named one.
    pub strategy: Option<Strategy>,
    /// The request's `ruleParameters` (the rule's InputParameters), as a JSON object string.
    pub rule_parameters: Option<String>,
}

/// What the policy lets a request do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The gate's parameters: the policy's, with a stricter threshold when one was asked.
    pub params: RuleParams,
    pub strategy: Strategy,
    /// What the request asked that the policy did not take, for the audit line.
    pub notes: Vec<String>,
}

/// Why a request is refused: the reason an operator reads (RemediationRefused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The policy's answer to a request: what it may do, or why it may not. Malformed
/// `ruleParameters` (not an object, a number that is not one) are refusals here too; the
/// payload's own shape was checked before.
pub fn admit(policy: &SecurityPolicy, who: &Requester, ask: &Ask) -> Result<Admitted, Refusal> {
    let refuse = |why: String| Err(Refusal(format!("{} asked: {why}", who.label())));
    let workload = matches!(who, Requester::Workload { .. });
    if ask.reimport && workload {
        return refuse(
            "re-import is the operator's: deleting imported material is how a key is revoked, and only the \
             security account may undo that (the operator document kms-rotation-guard-rotate-key or the CLI)"
                .into(),
        );
    }
    let strategy = match ask.strategy {
        None => policy.strategy,
        Some(s) if s == policy.strategy => s,
        Some(s) if workload => {
            return refuse(format!(
                "strategy {s} differs from the security account's policy ({}); a workload account cannot choose it",
                policy.strategy
            ))
        }
        // An operator's break glass: alias-swap only where it is enabled.
        Some(Strategy::AliasSwap) if !policy.allow_alias_swap => {
            return refuse(
                "alias-swap is not allowed here (KRG_ALLOW_ALIAS_SWAP is not true): it is an operator's \
                 break-glass path"
                    .into(),
            )
        }
        Some(s) => s,
    };
    let mut params = policy.rule_params();
    let mut notes = Vec::new();
    let asked = match parse_asked(ask.rule_parameters.as_deref()) {
        Ok(a) => a,
        Err(e) => return refuse(e),
    };
    if let Some(tag) = asked.get("rotationTagKey") {
        if tag.trim() != policy.rotation_tag_key {
            return refuse(format!(
                "rotationTagKey {:?} differs from the security account's ({:?}); the rotation writes only the \
                 policy's tag",
                clip(tag),
                policy.rotation_tag_key
            ));
        }
    }
    let days = |name: &str, policy_value: i64, min: i64| -> Result<Option<i64>, String> {
        match asked.get(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (min..=MAX_DAYS).contains(&n) => Ok(Some(n)),
                _ => Err(format!("{name} {:?} is not a whole number of days from {min} to {MAX_DAYS}", clip(v))),
            },
        }
        .map(|v| v.filter(|n| *n != policy_value))
    };
    let max = match days("maxKeyAgeDays", policy.max_key_age_days, 1) {
        Ok(v) => v,
        Err(e) => return refuse(e),
    };
    let warn = match days("expiryWarningDays", policy.expiry_warning_days, 0) {
        Ok(v) => v,
        Err(e) => return refuse(e),
    };
    if max.is_some() || warn.is_some() {
        let m = max.unwrap_or(policy.max_key_age_days);
        let w = warn.unwrap_or(policy.expiry_warning_days);
        let asked_due = (m - w).max(1);
        if asked_due < policy.min_rotation_interval_days {
            return refuse(format!(
                "maxKeyAgeDays {m} − expiryWarningDays {w} would make keys due at {asked_due} days, sooner than the \
                 security account allows (MinRotationIntervalDays {}): a key has only {ON_DEMAND_QUOTA} on-demand \
                 rotations for life",
                policy.min_rotation_interval_days
            ));
        }
        if asked_due < policy.due_days() {
            // Stricter: due at the asked age; the expiry window stays the policy's.
            params.max_key_age_days = asked_due + policy.expiry_warning_days;
            notes.push(format!("stricter threshold asked: due at {asked_due} days (policy {})", policy.due_days()));
        } else {
            notes.push(format!(
                "looser threshold asked (due at {asked_due} days): the policy's applies (due at {})",
                policy.due_days()
            ));
        }
    }
    Ok(Admitted { params, strategy, notes })
}

/// The request's `ruleParameters` as name → string value (Config passes every value as a
/// string; numbers and booleans are accepted as their text).
fn parse_asked(raw: Option<&str>) -> Result<BTreeMap<String, String>, String> {
    let raw = raw.map(str::trim).unwrap_or("");
    if raw.is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("ruleParameters is not JSON: {e}"))?;
    let Value::Object(m) = v else { return Err("ruleParameters is not a JSON object".into()) };
    Ok(m.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// Few rotations left: `Some(reason)` when a key that is due has `min_left` on-demand
/// rotations left or fewer (`on_demand_used` counted from ListKeyRotations). `None` when
/// there are enough, or when KMS could not say (the rotation's own plan still stops at 0).
pub fn quota_check(key: &str, on_demand_used: Option<usize>, min_left: u32) -> Option<String> {
    let used = u32::try_from(on_demand_used?).unwrap_or(u32::MAX);
    let left = ON_DEMAND_QUOTA.saturating_sub(used);
    (left <= min_left).then(|| {
        format!(
            "{key}: few rotations left ({left} of {ON_DEMAND_QUOTA} on-demand rotations; minRotationsLeft {min_left}): \
             not rotated automatically; plan an alias-swap or a new key, or an operator rotates it with \
             `kms-rotation-guard rotate --force`"
        )
    })
}

fn clip(s: &str) -> String {
    crate::error::truncate_chars(s, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Requester {
        Requester::Workload { account: "111122223333".into() }
    }

    fn asking(params: &str) -> Ask {
        Ask { rule_parameters: Some(params.into()), ..Ask::default() }
    }

    #[test]
    fn a_workload_only_asks_to_judge_and_rotate() {
        let p = SecurityPolicy { allow_alias_swap: true, ..SecurityPolicy::default() };
        let ok = admit(&p, &workload(), &Ask::default()).unwrap();
        assert_eq!(ok.params, p.rule_params());
        assert_eq!(ok.strategy, Strategy::InPlace);
        for (ask, says) in [
            (Ask { reimport: true, ..Ask::default() }, "re-import is the operator's"),
            (Ask { strategy: Some(Strategy::AliasSwap), ..Ask::default() }, "strategy alias-swap differs"),
        ] {
            let e = admit(&p, &workload(), &ask).unwrap_err();
            assert!(e.0.contains(says) && e.0.contains("workload account 111122223333"), "{ask:?}: {e}");
        }
        // The same asks from an operator.
        assert!(admit(&p, &Requester::Operator, &Ask { reimport: true, ..Ask::default() }).is_ok());
        let swap = Ask { strategy: Some(Strategy::AliasSwap), ..Ask::default() };
        assert_eq!(admit(&p, &Requester::Operator, &swap).unwrap().strategy, Strategy::AliasSwap);
        let closed = SecurityPolicy::default();
        assert!(admit(&closed, &Requester::Operator, &swap).unwrap_err().0.contains("KRG_ALLOW_ALIAS_SWAP"));
        // Naming the policy's own strategy is not a refusal.
        let same = Ask { strategy: Some(Strategy::InPlace), ..Ask::default() };
        assert!(admit(&p, &workload(), &same).is_ok());
    }

    #[test]
    fn a_request_may_be_stricter_but_never_below_the_floor() {
        let p = SecurityPolicy::default(); // 365 − 30 = due at 335, floor 90
        assert_eq!(p.due_days(), 335);
        // Stricter, above the floor: due at the asked age.
        let ok = admit(&p, &workload(), &asking(r#"{"maxKeyAgeDays":"180"}"#)).unwrap();
        assert_eq!(ok.params.max_key_age_days - ok.params.expiry_warning_days, 150);
        assert_eq!(ok.params.expiry_warning_days, 30, "the expiry window stays the policy's");
        // Exactly the floor is allowed; one day below is not.
        let at = admit(&p, &workload(), &asking(r#"{"maxKeyAgeDays":"120","expiryWarningDays":"30"}"#)).unwrap();
        assert_eq!(at.params.max_key_age_days - at.params.expiry_warning_days, 90);
        for below in [
            r#"{"maxKeyAgeDays":"1"}"#,
            r#"{"maxKeyAgeDays":"119"}"#,
            r#"{"maxKeyAgeDays":"365","expiryWarningDays":"300"}"#,
            r#"{"maxKeyAgeDays":1}"#,
        ] {
            let e = admit(&p, &workload(), &asking(below)).unwrap_err();
            assert!(e.0.contains("MinRotationIntervalDays 90"), "{below}: {e}");
        }
        // The operator is held to the floor too (forcing is the CLI's).
        assert!(admit(&p, &Requester::Operator, &asking(r#"{"maxKeyAgeDays":"1"}"#)).is_err());
        // Looser: the policy's threshold, noted.
        let loose = admit(&p, &workload(), &asking(r#"{"maxKeyAgeDays":"3650"}"#)).unwrap();
        assert_eq!(loose.params, p.rule_params());
        assert!(loose.notes[0].contains("looser"), "{:?}", loose.notes);
        // The workload rule's own parameters, equal to the policy: nothing to note.
        let same = admit(
            &p,
            &workload(),
            &asking(r#"{"maxKeyAgeDays":"365","rotationTagKey":"LastRotationDate","keyReaderRoleName":"x","verifyTagAgainstKms":"false"}"#),
        )
        .unwrap();
        assert_eq!(same.params, p.rule_params(), "keyReaderRoleName and verifyTagAgainstKms are the policy's");
        assert!(same.notes.is_empty());
        for bad in [r#"{"maxKeyAgeDays":"soon"}"#, r#"[1]"#, "{", r#"{"expiryWarningDays":"-1"}"#] {
            assert!(admit(&p, &workload(), &asking(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_foreign_rotation_tag_is_refused() {
        let p = SecurityPolicy::default();
        let e = admit(&p, &workload(), &asking(r#"{"rotationTagKey":"DataClassification"}"#)).unwrap_err();
        assert!(e.0.contains("rotationTagKey \"DataClassification\""), "{e}");
        let e = admit(&p, &Requester::Operator, &asking(r#"{"rotationTagKey":"Owner"}"#)).unwrap_err();
        assert!(e.0.contains("Owner"), "{e}");
    }

    #[test]
    fn the_policy_comes_from_the_environment_and_must_agree_with_itself() {
        let env = |pairs: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            SecurityPolicy::from_lookup(move |n| m.get(n).cloned())
        };
        assert_eq!(env(&[]).unwrap(), SecurityPolicy::default());
        let p = env(&[
            ("KRG_MAX_KEY_AGE_DAYS", "180"),
            ("KRG_EXPIRY_WARNING_DAYS", "10"),
            ("KRG_ROTATION_TAG_KEY", "Rotated"),
            ("KRG_MIN_ROTATIONS_LEFT", "3"),
            ("KRG_MIN_ROTATION_INTERVAL_DAYS", "170"),
            ("KRG_VERIFY_TAG_AGAINST_KMS", "false"),
        ])
        .unwrap();
        assert_eq!((p.due_days(), p.min_rotations_left, p.rotation_tag_key.as_str()), (170, 3, "Rotated"));
        for (bad, says) in [
            (vec![("KRG_MIN_ROTATION_INTERVAL_DAYS", "400")], "above the policy's own due age"),
            (vec![("KRG_MAX_KEY_AGE_DAYS", "0")], "KRG_MAX_KEY_AGE_DAYS"),
            (vec![("KRG_MIN_ROTATIONS_LEFT", "26")], "KRG_MIN_ROTATIONS_LEFT"),
            (vec![("KRG_STRATEGY", "sideways")], "KRG_STRATEGY"),
            (vec![("KRG_STRATEGY", "alias-swap")], "KRG_ALLOW_ALIAS_SWAP"),
            (vec![("KRG_VERIFY_TAG_AGAINST_KMS", "yes")], "KRG_VERIFY_TAG_AGAINST_KMS"),
        ] {
            let e = env(&bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn few_rotations_left_stops_automatic_rotation() {
        assert_eq!(quota_check("k", Some(0), 5), None);
        assert_eq!(quota_check("k", Some(19), 5), None, "6 left");
        let at = quota_check("k", Some(20), 5).unwrap();
        assert!(at.contains("few rotations left (5 of 25"), "{at}");
        assert!(quota_check("k", Some(25), 0).unwrap().contains("0 of 25"));
        assert_eq!(quota_check("k", Some(24), 0), None, "minRotationsLeft 0 spends the last one");
        assert_eq!(quota_check("k", None, 5), None, "unknown: the plan still stops at 0");
    }
}
