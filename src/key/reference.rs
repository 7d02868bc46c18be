//! Parsing of the four ways a KMS key is referenced: key id, key ARN, alias name, alias ARN.
//!
//! Resources carry whichever form their owner typed, so the same key can reach us under
//! several spellings. [`KeyRef::qualified`] turns every form into one ARN so that the
//! per-invocation cache looks each key up once.
//!
//! Pure parsing: no AWS call.

use std::fmt;

/// The account, region and partition a reference is resolved in when it carries none
/// (a bare key id or alias name means "in the resource's own account and region").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Home {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl Home {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        let region = region.into();
        Home { partition: partition_of(&region).to_string(), region, account: account.into() }
    }
}

/// The ARN partition that owns a region.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// A KMS key reference as written on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// `1234abcd-12ab-34cd-56ef-1234567890ab` or a multi-Region `mrk-…` id.
    KeyId(String),
    /// `alias/name`.
    AliasName(String),
    /// `arn:<partition>:kms:<region>:<account>:key/<id>`.
    KeyArn(KmsArn),
    /// `arn:<partition>:kms:<region>:<account>:alias/<name>`.
    AliasArn(KmsArn),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KmsArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    /// `key/<id>` or `alias/<name>`.
    pub resource: String,
}

impl fmt::Display for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:{}:kms:{}:{}:{}", self.partition, self.region, self.account, self.resource)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a KMS key reference (key id, key ARN, alias name or alias ARN): {reason}")]
pub struct KeyRefError {
    pub input: String,
    pub reason: &'static str,
}

const MAX_REF_LEN: usize = 2048;

impl KeyRef {
    pub fn parse(input: &str) -> Result<KeyRef, KeyRefError> {
        let s = input.trim();
        let err = |reason| KeyRefError { input: truncate_chars(input, 120), reason };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > MAX_REF_LEN {
            return Err(err("too long"));
        }
        if let Some(rest) = s.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(err("an ARN has six colon-separated parts"));
            };
            if service != "kms" {
                return Err(err("not a KMS ARN"));
            }
            if !matches!(
                partition,
                "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b" | "aws-iso-e" | "aws-iso-f" | "aws-eusc"
            ) {
                return Err(err("unknown partition"));
            }
            if !is_region(region) {
                return Err(err("bad region"));
            }
            if !is_account(account) {
                return Err(err("the account must be 12 digits"));
            }
            let arn = KmsArn {
                partition: partition.into(),
                region: region.into(),
                account: account.into(),
                resource: resource.into(),
            };
            if let Some(id) = resource.strip_prefix("key/") {
                if !is_key_id(id) {
                    return Err(err("bad key id in ARN"));
                }
                Ok(KeyRef::KeyArn(arn))
            } else if resource.starts_with("alias/") {
                if !is_alias_name(resource) {
                    return Err(err("bad alias name in ARN"));
                }
                Ok(KeyRef::AliasArn(arn))
            } else {
                Err(err("a KMS ARN names key/<id> or alias/<name>"))
            }
        } else if s.starts_with("alias/") {
            if !is_alias_name(s) {
                return Err(err("bad alias name"));
            }
            Ok(KeyRef::AliasName(s.into()))
        } else if is_key_id(s) {
            Ok(KeyRef::KeyId(s.into()))
        } else {
            Err(err("unrecognised form"))
        }
    }

    /// The account named by the reference, if it names one.
    pub fn account(&self) -> Option<&str> {
        match self {
            KeyRef::KeyArn(a) | KeyRef::AliasArn(a) => Some(&a.account),
            _ => None,
        }
    }

    /// The account the key lives in: named by the reference or else the resource's own.
    pub fn account_or<'a>(&'a self, home: &'a Home) -> &'a str {
        self.account().unwrap_or(&home.account)
    }

    /// The reference as a full ARN, resolving bare ids and names in `home`. Used as the
    /// cache key, so `alias/x` and its alias ARN are looked up once.
    pub fn qualified(&self, home: &Home) -> String {
        match self {
            KeyRef::KeyArn(a) | KeyRef::AliasArn(a) => a.to_string(),
            KeyRef::KeyId(id) => {
                format!("arn:{}:kms:{}:{}:key/{}", home.partition, home.region, home.account, id)
            }
            KeyRef::AliasName(name) => {
                format!("arn:{}:kms:{}:{}:{}", home.partition, home.region, home.account, name)
            }
        }
    }

    /// `alias/aws/…` names the AWS-managed key of a service (aws/s3, aws/rds, aws/dynamodb).
    pub fn is_aws_managed_alias(&self) -> bool {
        match self {
            KeyRef::AliasName(n) => n.starts_with("alias/aws/"),
            KeyRef::AliasArn(a) => a.resource.starts_with("alias/aws/"),
            _ => false,
        }
    }

    /// A short human name for annotations: the alias or key id without the ARN noise.
    pub fn short(&self) -> &str {
        match self {
            KeyRef::KeyId(s) | KeyRef::AliasName(s) => s,
            KeyRef::KeyArn(a) => a.resource.trim_start_matches("key/"),
            KeyRef::AliasArn(a) => &a.resource,
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::KeyId(s) | KeyRef::AliasName(s) => f.write_str(s),
            KeyRef::KeyArn(a) | KeyRef::AliasArn(a) => a.fmt(f),
        }
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A UUID key id, or `mrk-` followed by 32 hex digits for multi-Region keys.
fn is_key_id(s: &str) -> bool {
    if let Some(hex) = s.strip_prefix("mrk-") {
        return hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// KMS alias names: `alias/` then 1–250 of `[A-Za-z0-9/_-]`.
fn is_alias_name(s: &str) -> bool {
    let Some(name) = s.strip_prefix("alias/") else { return false };
    !name.is_empty()
        && s.len() <= 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
}

// Kept under its old path for the modules above `key` that quote input with it.
pub(crate) use crate::error::truncate_chars;

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn parses_every_form() {
        assert_eq!(KeyRef::parse(ID).unwrap(), KeyRef::KeyId(ID.into()));
        assert_eq!(KeyRef::parse("alias/prod-s3").unwrap(), KeyRef::AliasName("alias/prod-s3".into()));
        let k = KeyRef::parse(&format!("arn:aws:kms:eu-west-1:111122223333:key/{ID}")).unwrap();
        assert!(matches!(&k, KeyRef::KeyArn(a) if a.account == "111122223333" && a.region == "eu-west-1"));
        assert_eq!(k.short(), ID);
        let a = KeyRef::parse("arn:aws-cn:kms:cn-north-1:111122223333:alias/prod/s3").unwrap();
        assert!(matches!(&a, KeyRef::AliasArn(x) if x.partition == "aws-cn"));
        assert_eq!(a.short(), "alias/prod/s3");
        let g = KeyRef::parse(&format!("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-{}", "a".repeat(32)))
            .unwrap();
        assert_eq!(g.account(), Some("111122223333"));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "  ",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:eu-west-1:1111:key/x",
            "arn:aws:kms:eu-west-1:111122223333:grant/abc",
            "arn:aws:kms:eu-west-1:111122223333:key/not-a-uuid",
            "arn:aws:kms:eu-west-1:111122223333",
            "arn:nope:kms:eu-west-1:111122223333:alias/x",
            "alias/",
            "alias/has space",
            "1234",
            "mrk-zz",
        ] {
            let e = KeyRef::parse(bad).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
            assert!(e.to_string().contains("not a KMS key reference"));
        }
    }

    #[test]
    fn qualified_makes_every_spelling_of_one_alias_equal() {
        let home = Home::new("eu-west-1", "111122223333");
        let by_name = KeyRef::parse("alias/x").unwrap().qualified(&home);
        let by_arn = KeyRef::parse("arn:aws:kms:eu-west-1:111122223333:alias/x").unwrap().qualified(&home);
        assert_eq!(by_name, by_arn);
        assert_eq!(KeyRef::parse(ID).unwrap().qualified(&home), format!("arn:aws:kms:eu-west-1:111122223333:key/{ID}"));
        assert_eq!(Home::new("cn-north-1", "1").partition, "aws-cn");
    }

    #[test]
    fn aws_managed_aliases_are_recognised() {
        assert!(KeyRef::parse("alias/aws/s3").unwrap().is_aws_managed_alias());
        assert!(KeyRef::parse("arn:aws:kms:eu-west-1:111122223333:alias/aws/rds").unwrap().is_aws_managed_alias());
        assert!(!KeyRef::parse("alias/awsome").unwrap().is_aws_managed_alias());
    }
}
