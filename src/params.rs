//! Rule parameters, as AWS Config passes them: a JSON object (itself sent as a string)
//! whose values are usually strings. Unknown names are rejected, because a misspelt
//! parameter silently falling back to its default would weaken the rule unnoticed.
//!
//! No AWS call; it validates the parameters, and the verdict reads them.

use serde_json::Value;

use crate::error::Error;

/// The rule's knobs. Defaults match `rules/*.yaml` (checked by tests/template/rules.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleParams {
    pub max_key_age_days: i64,
    pub rotation_tag_key: String,
    pub key_reader_role_name: Option<String>,
    pub allow_aws_managed_keys: bool,
    pub verify_tag_against_kms: bool,
    pub expiry_warning_days: i64,
    /// A key with this many on-demand rotations left (of 25) or fewer: the verdict says
    /// "few rotations left" so that people plan an alias-swap or a new key, and the
    /// security account does not rotate it automatically (its own MinRotationsLeft).
    pub min_rotations_left: u32,
    /// Organization rules: the role the handler assumes in the event's account
    /// (`arn:{partition}:iam::{accountId}:role/{name}`, rdklib's ExecutionRoleName), where it
    /// enumerates, reads recorded results and calls PutEvaluations. None: its own role.
    pub execution_role_name: Option<String>,
}

/// Tag written next to the rotation date by the rotation module; cross-checked against
/// KMS's CurrentKeyMaterialId when present.
pub const MATERIAL_ID_TAG: &str = "LastRotationKeyMaterialId";

impl Default for RuleParams {
    fn default() -> Self {
        RuleParams {
            max_key_age_days: 365,
            rotation_tag_key: "LastRotationDate".into(),
            key_reader_role_name: None,
            allow_aws_managed_keys: false,
            verify_tag_against_kms: true,
            expiry_warning_days: 30,
            min_rotations_left: 5,
            execution_role_name: None,
        }
    }
}

/// Parameter names as they appear in Config, in `rules/` and in the template.
pub const PARAMETER_NAMES: [&str; 8] = [
    "maxKeyAgeDays",
    "rotationTagKey",
    "keyReaderRoleName",
    "allowAwsManagedKeys",
    "verifyTagAgainstKms",
    "expiryWarningDays",
    "minRotationsLeft",
    "executionRoleName",
];

const MAX_DAYS: i64 = 36_500;

impl RuleParams {
    /// Parses Config's `ruleParameters` string. `None`, empty and `{}` give the defaults.
    pub fn parse(raw: Option<&str>) -> Result<RuleParams, Error> {
        let raw = raw.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(RuleParams::default());
        }
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| Error::InvalidParameter { name: "ruleParameters".into(), reason: format!("not JSON: {e}") })?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<RuleParams, Error> {
        let map = match value {
            Value::Object(m) => m,
            Value::Null => return Ok(RuleParams::default()),
            _ => {
                return Err(Error::InvalidParameter {
                    name: "ruleParameters".into(),
                    reason: "must be a JSON object".into(),
                })
            }
        };
        let mut p = RuleParams::default();
        for (name, v) in map {
            let bad = |reason: String| Error::InvalidParameter { name: name.clone(), reason };
            match name.as_str() {
                "maxKeyAgeDays" => p.max_key_age_days = days(v, 1).map_err(bad)?,
                "expiryWarningDays" => p.expiry_warning_days = days(v, 0).map_err(bad)?,
                "minRotationsLeft" => {
                    // The on-demand quota: 25 per key (KMS Developer Guide, "Rotating keys on demand").
                    let n = days(v, 0).map_err(|_| bad("expected a whole number from 0 to 25".into()))?;
                    if n > 25 {
                        return Err(bad(format!("{n} is out of range (0 to 25 on-demand rotations)")));
                    }
                    p.min_rotations_left = n as u32;
                }
                "allowAwsManagedKeys" => p.allow_aws_managed_keys = boolean(v).map_err(bad)?,
                "verifyTagAgainstKms" => p.verify_tag_against_kms = boolean(v).map_err(bad)?,
                "rotationTagKey" => {
                    let s = string(v).map_err(bad)?;
                    if s.is_empty() || s.chars().count() > 128 {
                        return Err(bad("a tag key has 1 to 128 characters".into()));
                    }
                    p.rotation_tag_key = s;
                }
                "keyReaderRoleName" => p.key_reader_role_name = role_name(v).map_err(bad)?,
                "executionRoleName" => p.execution_role_name = role_name(v).map_err(bad)?,
                _ => {
                    return Err(bad(format!("unknown parameter; the rule accepts {}", PARAMETER_NAMES.join(", "))));
                }
            }
        }
        Ok(p)
    }
}

/// An IAM role name, or None when empty.
pub fn role_name(v: &Value) -> Result<Option<String>, String> {
    let s = string(v)?;
    if s.is_empty() {
        Ok(None)
    } else if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)) {
        Err("an IAM role name has 1 to 64 of A-Z a-z 0-9 +=,.@_-".into())
    } else {
        Ok(Some(s))
    }
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.trim().to_string()),
        _ => Err(format!("expected a string, got {}", kind(v))),
    }
}

fn days(v: &Value, min: i64) -> Result<i64, String> {
    let n = match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("expected a whole number of days, got {n}"))?,
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("expected a whole number of days, got {:?}", crate::error::truncate_chars(s, 40)))?,
        _ => return Err(format!("expected a whole number of days, got {}", kind(v))),
    };
    if n < min || n > MAX_DAYS {
        return Err(format!("{n} is out of range ({min} to {MAX_DAYS})"));
    }
    Ok(n)
}

fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("expected true or false, got {}", crate::error::truncate_chars(&v.to_string(), 40))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(raw: &str) -> String {
        RuleParams::parse(Some(raw)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_when_absent_or_empty() {
        for raw in [None, Some(""), Some("{}"), Some("  ")] {
            assert_eq!(RuleParams::parse(raw).unwrap(), RuleParams::default());
        }
    }

    #[test]
    fn accepts_strings_as_config_sends_them_and_native_json() {
        let p = RuleParams::parse(Some(
            r#"{"maxKeyAgeDays":"90","allowAwsManagedKeys":"TRUE","verifyTagAgainstKms":false,
                "expiryWarningDays":0,"rotationTagKey":"rotated-at","keyReaderRoleName":"kms-reader"}"#,
        ))
        .unwrap();
        assert_eq!(p.max_key_age_days, 90);
        assert!(p.allow_aws_managed_keys);
        assert!(!p.verify_tag_against_kms);
        assert_eq!(p.expiry_warning_days, 0);
        assert_eq!(p.rotation_tag_key, "rotated-at");
        assert_eq!(p.key_reader_role_name.as_deref(), Some("kms-reader"));
        assert_eq!(RuleParams::parse(Some(r#"{"keyReaderRoleName":""}"#)).unwrap().key_reader_role_name, None);
        let org = RuleParams::parse(Some(r#"{"executionRoleName":"kms-rotation-guard-member"}"#)).unwrap();
        assert_eq!(org.execution_role_name.as_deref(), Some("kms-rotation-guard-member"));
    }

    #[test]
    fn rejects_bad_values_naming_the_parameter() {
        for (raw, name) in [
            (r#"{"maxKeyAgeDays":"0"}"#, "maxKeyAgeDays"),
            (r#"{"maxKeyAgeDays":-5}"#, "maxKeyAgeDays"),
            (r#"{"maxKeyAgeDays":"ninety"}"#, "maxKeyAgeDays"),
            (r#"{"maxKeyAgeDays":1.5}"#, "maxKeyAgeDays"),
            (r#"{"expiryWarningDays":"-1"}"#, "expiryWarningDays"),
            (r#"{"allowAwsManagedKeys":"yes"}"#, "allowAwsManagedKeys"),
            (r#"{"rotationTagKey":""}"#, "rotationTagKey"),
            (r#"{"rotationTagKey":7}"#, "rotationTagKey"),
            (r#"{"keyReaderRoleName":"bad name"}"#, "keyReaderRoleName"),
            (r#"{"executionRoleName":"a/b"}"#, "executionRoleName"),
            (r#"{"maxKeyAgedays":"30"}"#, "maxKeyAgedays"),
            (r#"[1]"#, "ruleParameters"),
            (r#"{"#, "ruleParameters"),
        ] {
            let e = err_of(raw);
            assert!(e.contains(name), "{raw}: {e}");
        }
    }
}
