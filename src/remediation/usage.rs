//! "Does the asking account use this key?" (issue 20).
//!
//! The asking account comes from the transport (the EventBridge envelope's `account`), so it
//! cannot be forged by the request. Whether that account uses the key is read in the security
//! account, with same-account reads of the key itself: its key policy (kms:GetKeyPolicy) and
//! its grants (kms:ListGrants). An account can only encrypt a resource with another
//! account's key when the key policy or a grant lets it, so:
//! - [`Usage::Used`]: a grant issued by that account (RDS and DynamoDB create one for each
//!   encrypted resource), or a key-policy statement that lets that account use the key;
//! - [`Usage::NotUsed`]: the key policy names the accounts that may use the key, the asking
//!   account is not one of them and issued no grant: the request is refused;
//! - [`Usage::Unknown`]: a statement lets any principal use the key, limited by organization
//!   or not at all: it cannot be told per account, so the request is limited to the
//!   security account's policy (the worst it can do is a rotation that was due anyway).
//!
//! Reading the resource itself in the asking account would need a role there (stream 21's
//! member role); it would prove less than it seems, since a bucket's default encryption can
//! name any key ARN. [`judge`] is pure; [`read`] does the I/O.

use serde_json::Value;

use super::RemediationError;
use crate::aws::Aws;

/// What the key policy and grants say about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    Used(String),
    NotUsed(String),
    Unknown(String),
}

impl Usage {
    /// `used`, `not-used` or `unknown`, for the audit line.
    pub fn label(&self) -> &'static str {
        match self {
            Usage::Used(_) => "used",
            Usage::NotUsed(_) => "not-used",
            Usage::Unknown(_) => "unknown",
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Usage::Used(r) | Usage::NotUsed(r) | Usage::Unknown(r) => r,
        }
    }
}

/// One grant, as ListGrants describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// `arn:aws:iam::<account>:root` (or the bare account id).
    pub issuing_account: Option<String>,
    pub grantee_principal: Option<String>,
}

/// The actions that use a key for data (any of them makes an account a user of the key).
const USE_ACTIONS: [&str; 7] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:CreateGrant",
];

/// Condition keys whose values name the calling account.
const ACCOUNT_KEYS: [&str; 2] = ["kms:calleraccount", "aws:principalaccount"];

/// Judges whether `caller` may use the key of `key_policy` (its JSON text) and `grants`.
/// `key` names the key in the reasons.
pub fn judge(key: &str, key_policy: &str, grants: &[Grant], caller: &str) -> Usage {
    if let Some(g) = grants.iter().find(|g| g.issuing_account.as_deref().and_then(account_of) == Some(caller.into())) {
        return Usage::Used(format!(
            "account {caller} issued a grant on {key} (grantee {})",
            g.grantee_principal.as_deref().unwrap_or("-")
        ));
    }
    let policy: Value = match serde_json::from_str(key_policy) {
        Ok(v) => v,
        Err(_) => return Usage::Unknown(format!("the key policy of {key} is not JSON; limited to the policy")),
    };
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(a) => a.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    };
    let mut named = std::collections::BTreeSet::new();
    let mut open = None;
    for st in statements {
        if st["Effect"].as_str() != Some("Allow") || !uses_key(st) {
            continue;
        }
        let sid = st["Sid"].as_str().unwrap_or("(no Sid)");
        let (accounts, anyone) = principals(&st["Principal"]);
        let limited = condition_accounts(&st["Condition"]);
        match (anyone, limited) {
            // "*" limited to accounts by a condition: those accounts.
            (true, Some(list)) => named.extend(list),
            (true, None) => open = open.or(Some(sid.to_string())),
            (false, Some(list)) => named.extend(accounts.into_iter().filter(|a| list.contains(a))),
            (false, None) => named.extend(accounts),
        }
    }
    if named.contains(caller) {
        return Usage::Used(format!("the key policy of {key} lets account {caller} use it"));
    }
    if let Some(sid) = open {
        return Usage::Unknown(format!(
            "the key policy of {key} lets any principal use it (statement {sid}, limited by organization or not at \
             all), so whether account {caller} uses it cannot be told; the request is limited to the security \
             account's policy"
        ));
    }
    let list: Vec<&str> = named.iter().map(String::as_str).collect();
    Usage::NotUsed(format!(
        "account {caller} does not use {key}: its key policy lets {} use it and no grant was issued by {caller}",
        if list.is_empty() { "no other account".to_string() } else { format!("only {}", list.join(", ")) }
    ))
}

/// Whether a statement allows (or, with NotAction, may allow) a use of the key.
fn uses_key(st: &Value) -> bool {
    if !st["NotAction"].is_null() {
        return true;
    }
    strings(&st["Action"])
        .iter()
        .any(|a| USE_ACTIONS.iter().any(|u| glob(&a.to_ascii_lowercase(), &u.to_ascii_lowercase())))
}

/// The accounts of a statement's AWS principals, and whether it admits anyone (`*`).
fn principals(p: &Value) -> (Vec<String>, bool) {
    let aws = match p {
        Value::String(s) if s == "*" => return (Vec::new(), true),
        Value::Object(m) => m.get("AWS").map(strings).unwrap_or_default(),
        _ => Vec::new(),
    };
    let anyone = aws.iter().any(|a| a == "*");
    (aws.iter().filter_map(|a| account_of(a)).collect(), anyone)
}

/// Accounts named by an account condition (StringEquals or StringLike without wildcards on
/// kms:CallerAccount or aws:PrincipalAccount); `None` when the statement has none.
fn condition_accounts(c: &Value) -> Option<Vec<String>> {
    let Value::Object(ops) = c else { return None };
    let mut found: Option<Vec<String>> = None;
    for (op, keys) in ops {
        let op = op.to_ascii_lowercase();
        if !(op.starts_with("stringequals") || op.starts_with("stringlike") || op.starts_with("forany")) {
            continue;
        }
        let Value::Object(keys) = keys else { continue };
        for (k, v) in keys {
            if ACCOUNT_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                let vals = strings(v);
                // A wildcard in an account value cannot be listed: treat as open.
                if vals.iter().any(|v| v.contains('*') || v.contains('?')) {
                    return None;
                }
                found.get_or_insert_with(Vec::new).extend(vals);
            }
        }
    }
    found
}

/// The account of a principal: a 12-digit id or an IAM ARN's account field.
fn account_of(p: &str) -> Option<String> {
    let p = p.trim();
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Some(p.to_string());
    }
    let mut parts = p.split(':');
    if parts.next() != Some("arn") {
        return None;
    }
    let (_partition, service, _region, account) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (matches!(service, "iam" | "sts") && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| account.to_string())
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// IAM-style wildcard match (`*` any run, `?` one character).
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = si;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Reads the key policy and the grants of `key_arn` (the rotation role's own key: both are
/// same-account reads) and judges `caller`.
pub async fn read(aws: &Aws, key_arn: &str, caller: &str) -> Result<Usage, RemediationError> {
    let denied = |operation: &str, message: String| RemediationError::AccessDenied {
        operation: operation.into(),
        message: format!("{message}; the rotation role needs it to tell whether account {caller} uses the key"),
    };
    let failed = |operation: &'static str, f: crate::aws::Failure| RemediationError::Aws {
        operation,
        transient: f.kind == crate::aws::FailureKind::Transient,
        message: f.message,
    };
    let policy = match aws.kms().get_key_policy().key_id(key_arn).policy_name("default").send().await {
        Ok(out) => out.policy().unwrap_or_default().to_string(),
        Err(e) => {
            let f = crate::aws::classify(&e);
            return Err(match f.kind {
                crate::aws::FailureKind::Denied => denied("kms:GetKeyPolicy", f.message),
                _ => failed("kms:GetKeyPolicy", f),
            });
        }
    };
    let mut grants = Vec::new();
    let mut marker = None;
    loop {
        let out = match aws.kms().list_grants().key_id(key_arn).set_marker(marker).send().await {
            Ok(o) => o,
            Err(e) => {
                let f = crate::aws::classify(&e);
                return Err(match f.kind {
                    crate::aws::FailureKind::Denied => denied("kms:ListGrants", f.message),
                    _ => failed("kms:ListGrants", f),
                });
            }
        };
        grants.extend(out.grants().iter().map(|g| Grant {
            issuing_account: g.issuing_account().map(str::to_string),
            grantee_principal: g.grantee_principal().map(str::to_string),
        }));
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            break;
        }
    }
    Ok(judge(key_arn, &policy, &grants, caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:eu-west-1:999999999999:key/k";
    const ME: &str = "111122223333";

    fn policy(statements: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"Root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::999999999999:root"}},"Action":"kms:*","Resource":"*"}},
            {statements}]}}"#
        )
    }

    #[test]
    fn a_key_policy_naming_the_account_or_a_grant_it_issued_proves_use() {
        let named = policy(
            r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/app","444455556666"]},
                "Action":["kms:Decrypt","kms:GenerateDataKey*"],"Resource":"*"}"#,
        );
        assert_eq!(judge(KEY, &named, &[], ME).label(), "used");
        assert_eq!(judge(KEY, &named, &[], "444455556666").label(), "used");
        let caller = policy(
            r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Encrypt","Resource":"*",
                "Condition":{"StringEquals":{"kms:CallerAccount":["111122223333"],"kms:ViaService":"s3.eu-west-1.amazonaws.com"}}}"#,
        );
        assert_eq!(judge(KEY, &caller, &[], ME).label(), "used");
        let grant = Grant { issuing_account: Some(format!("arn:aws:iam::{ME}:root")), grantee_principal: None };
        let only_root = policy(r#"{"Sid":"X","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}"#);
        assert_eq!(judge(KEY, &only_root, &[grant], ME).label(), "used");
    }

    #[test]
    fn a_key_policy_naming_other_accounts_only_disproves_use() {
        let others = policy(
            r#"{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:*","Resource":"*"},
               {"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:DescribeKey","Resource":"*"}"#,
        );
        let u = judge(
            KEY,
            &others,
            &[Grant { issuing_account: Some("arn:aws:iam::444455556666:root".into()), ..Grant::default() }],
            ME,
        );
        assert_eq!(u.label(), "not-used", "{u:?}");
        assert!(u.reason().contains("only 444455556666, 999999999999"), "{u:?}");
        let own_only = policy(
            r#"{"Sid":"Svc","Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":"kms:Encrypt*","Resource":"*"}"#,
        );
        assert_eq!(judge(KEY, &own_only, &[], ME).label(), "not-used");
    }

    #[test]
    fn an_organization_wide_statement_cannot_tell() {
        let org = policy(
            r#"{"Sid":"Org","Effect":"Allow","Principal":"*","Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*",
                "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abcdefghij"}}}"#,
        );
        let u = judge(KEY, &org, &[], ME);
        assert_eq!(u.label(), "unknown", "{u:?}");
        assert!(u.reason().contains("statement Org"), "{u:?}");
        let wildcard_account = policy(
            r#"{"Sid":"Like","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*",
                "Condition":{"StringLike":{"kms:CallerAccount":"1111*"}}}"#,
        );
        assert_eq!(judge(KEY, &wildcard_account, &[], ME).label(), "unknown");
        assert_eq!(judge(KEY, "not json", &[], ME).label(), "unknown");
    }

    #[test]
    fn accounts_and_globs() {
        assert_eq!(account_of("arn:aws:iam::111122223333:role/x").as_deref(), Some(ME));
        assert_eq!(account_of("arn:aws-us-gov:sts::111122223333:assumed-role/x/y").as_deref(), Some(ME));
        assert_eq!(account_of("111122223333").as_deref(), Some(ME));
        assert_eq!(account_of("arn:aws:kms:eu-west-1:111122223333:key/x"), None);
        assert!(glob("kms:generatedatakey*", "kms:generatedatakeywithoutplaintext"));
        assert!(glob("kms:*", "kms:decrypt"));
        assert!(!glob("kms:describe*", "kms:decrypt"));
    }
}
