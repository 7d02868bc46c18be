//! What KMS told us about one key: plain data, no SDK types, so the verdict can be tested
//! without a network and SDK upgrades stay in `key::lookup`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// The result of looking up one key reference.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyLookup {
    Found(Box<KeyFacts>),
    /// KMS says there is no such key or alias (NotFoundException).
    NotFound,
    /// DescribeKey itself was refused: a finding, named in the annotation.
    Denied(Denial),
    /// The reference names an AWS-managed key (`alias/aws/…`); nothing to look up.
    AwsManagedAlias,
}

/// A read that IAM (or KMS's cross-account rules) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The IAM action, e.g. `kms:ListResourceTags`.
    pub action: String,
    /// What to do about it, e.g. "cannot be called across accounts: set keyReaderRoleName".
    pub hint: String,
}

/// One optional read about a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact<T> {
    Known(T),
    Denied(Denial),
    /// The endpoint does not implement the call (seen with emulators; not in AWS).
    Unsupported(String),
    /// KMS implements the call but not for this key: `UnsupportedOperationException`, as
    /// ListKeyRotations and GetKeyRotationStatus answer for keys in a custom key store
    /// (Origin AWS_CLOUDHSM or EXTERNAL_KEY_STORE). A fact about the key, not an error.
    NotForThisKey(String),
    /// Not asked, because the verdict cannot depend on it.
    NotRead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyManager {
    Aws,
    Customer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyFacts {
    pub key_arn: String,
    pub key_id: String,
    pub account: String,
    /// Enabled, Disabled, PendingImport, PendingDeletion, Unavailable, …
    pub state: String,
    /// AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE.
    pub origin: String,
    pub manager: KeyManager,
    pub created: Option<DateTime<Utc>>,
    /// KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE (imported material only).
    pub expiration_model: Option<String>,
    pub valid_to: Option<DateTime<Utc>>,
    pub current_material_id: Option<String>,
    pub multi_region: bool,
    pub tags: Fact<BTreeMap<String, String>>,
    /// ListKeyRotations with all key material: every rotation KMS performed.
    pub rotations: Fact<Vec<Rotation>>,
    /// GetKeyRotationStatus (AWS_KMS-origin customer keys only).
    pub auto_rotation: Fact<AutoRotation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub date: Option<DateTime<Utc>>,
    pub material_id: Option<String>,
    /// CURRENT, NON_CURRENT, PENDING_ROTATION.
    pub material_state: Option<String>,
    pub expiration_model: Option<String>,
    pub valid_to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRotation {
    pub enabled: bool,
    pub period_days: Option<i64>,
    /// GetKeyRotationStatus `NextRotationDate`: when KMS will next rotate the key.
    pub next_rotation: Option<DateTime<Utc>>,
}

impl KeyFacts {
    /// A key as KMS describes it before any optional read: the starting point for tests.
    pub fn new(key_id: &str, account: &str, origin: &str) -> KeyFacts {
        KeyFacts {
            key_arn: format!("arn:aws:kms:eu-west-1:{account}:key/{key_id}"),
            key_id: key_id.into(),
            account: account.into(),
            state: "Enabled".into(),
            origin: origin.into(),
            manager: KeyManager::Customer,
            created: None,
            expiration_model: None,
            valid_to: None,
            current_material_id: None,
            multi_region: false,
            tags: Fact::NotRead,
            rotations: Fact::NotRead,
            auto_rotation: Fact::NotRead,
        }
    }

    /// The newest date KMS knows key material took effect: the newest rotation, else, for
    /// a key whose material KMS generated, the key's creation. `None` when the history is
    /// unknown, or when the only material was imported: ListKeyRotations gives the first
    /// import no date, and it may have come days after CreateKey.
    pub fn newest_material_date(&self) -> Option<DateTime<Utc>> {
        match &self.rotations {
            Fact::Known(rs) => {
                let rotated = rs.iter().filter_map(|r| r.date).max();
                if self.origin == "AWS_KMS" {
                    rotated.or(self.created)
                } else {
                    rotated
                }
            }
            _ => None,
        }
    }

    /// A key in a custom key store, which KMS never rotates.
    pub fn in_custom_key_store(&self) -> bool {
        matches!(self.origin.as_str(), "AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE")
            || matches!(self.rotations, Fact::NotForThisKey(_))
    }

    /// Expiry of the current material, from DescribeKey or else the rotation listing.
    pub fn expiry(&self) -> (Option<&str>, Option<DateTime<Utc>>) {
        let current = match &self.rotations {
            Fact::Known(rs) => rs.iter().find(|r| r.material_state.as_deref() == Some("CURRENT")),
            _ => None,
        };
        let model = self.expiration_model.as_deref().or_else(|| current.and_then(|c| c.expiration_model.as_deref()));
        let valid_to = self.valid_to.or_else(|| current.and_then(|c| c.valid_to));
        (model, valid_to)
    }
}
