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
    /// CURRENT, NON_CURRENT, PENDING_ROTATION, PENDING_MULTI_REGION_IMPORT_AND_ROTATION.
    pub material_state: Option<String>,
    pub expiration_model: Option<String>,
    pub valid_to: Option<DateTime<Utc>>,
}

/// When a key stops working because imported material expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// No permanently associated material expires.
    Never,
    /// The earliest expiry; `material` is its KeyMaterialId when KMS listed it.
    On { material: Option<String>, valid_to: DateTime<Utc> },
    /// Some material expires (KEY_MATERIAL_EXPIRES) but KMS gave no date.
    DateUnknown { material: Option<String> },
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

    /// The earliest expiry of any key material permanently associated with the key.
    ///
    /// KMS makes the whole key unusable (PendingImport) when ANY such material expires, not
    /// only the current one (Developer Guide, "Delete imported key material"), so every
    /// listed CURRENT and NON_CURRENT material counts, and so does DescribeKey's `ValidTo`,
    /// "the earliest time at which any imported key material permanently associated with this
    /// KMS key expires" (KeyMetadata). Material pending rotation is not permanently associated
    /// (RotationsListEntry) and does not count.
    pub fn earliest_expiry(&self) -> Expiry {
        let listed: &[Rotation] = match &self.rotations {
            Fact::Known(rs) => rs,
            _ => &[],
        };
        let associated = listed.iter().filter(|r| {
            !matches!(
                r.material_state.as_deref(),
                Some("PENDING_ROTATION" | "PENDING_MULTI_REGION_IMPORT_AND_ROTATION")
            )
        });
        let mut dated: Vec<(Option<&str>, DateTime<Utc>)> = Vec::new();
        let mut undated: Option<Option<&str>> = None;
        for r in associated {
            match (r.valid_to, r.expiration_model.as_deref()) {
                (Some(t), _) => dated.push((r.material_id.as_deref(), t)),
                (None, Some("KEY_MATERIAL_EXPIRES")) => undated = undated.or(Some(r.material_id.as_deref())),
                _ => {}
            }
        }
        if let Some(t) = self.valid_to {
            // The key's date names no material: take the listed one with that date, if any.
            if !dated.iter().any(|(_, d)| *d == t) {
                dated.push((None, t));
            }
        }
        if let Some((material, valid_to)) = dated.into_iter().min_by_key(|(m, t)| (*t, m.is_none())) {
            return Expiry::On { material: material.map(str::to_string), valid_to };
        }
        if let Some(material) = undated {
            return Expiry::DateUnknown { material: material.map(str::to_string) };
        }
        if self.expiration_model.as_deref() == Some("KEY_MATERIAL_EXPIRES") {
            return Expiry::DateUnknown { material: None };
        }
        Expiry::Never
    }

    /// The expiration model and date to show for the key: the earliest expiry of any of its
    /// materials ([`Self::earliest_expiry`]), else the key's own model.
    pub fn expiry(&self) -> (Option<&str>, Option<DateTime<Utc>>) {
        match self.earliest_expiry() {
            Expiry::On { valid_to, .. } => (Some("KEY_MATERIAL_EXPIRES"), Some(valid_to)),
            Expiry::DateUnknown { .. } => (Some("KEY_MATERIAL_EXPIRES"), None),
            Expiry::Never => (self.expiration_model.as_deref(), None),
        }
    }

    /// Whether KMS has ever held key material for this key (a current material id, or any
    /// listed material): a PendingImport key then needs that same material back, never new.
    pub fn had_material(&self) -> bool {
        self.current_material_id.is_some()
            || matches!(&self.rotations, Fact::Known(rs) if rs.iter().any(|r| r.material_id.is_some()))
    }
}
