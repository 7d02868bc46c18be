//! Kept material: a persistent token object named once, when it is created (`CKA_LABEL` = the
//! KMS key ARN, `CKA_ID` = an id of its own), so that it can be found and imported again, and
//! which key a label belongs to. Which KMS material it holds is KMS's to say (the rotation's
//! `custody` module): AWS CloudHSM does not let CKA_ID change after creation.

use std::fmt;

/// `CKA_ID` of a kept material that an earlier version generated and had not named yet.
pub const LEGACY_PENDING_ID: &str = "pending";

/// Key material kept on a token as a persistent object, found again by its attributes alone:
/// `CKA_LABEL` is the KMS key ARN and `CKA_ID` the object's own id, given when it was created
/// and never changed (`krg-…`; objects of earlier versions carry the KMS `KeyMaterialId`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptMaterial {
    /// The token's label.
    pub token: String,
    /// `CKA_LABEL`: the ARN of the key the material was generated for.
    pub key_arn: String,
    /// `CKA_ID`: the object's own id.
    pub object_id: String,
    /// The KMS key material id it holds, when known (from KMS's description or the key's
    /// tags, or the CKA_ID itself for objects of earlier versions).
    pub key_material_id: Option<String>,
}

impl fmt::Display for KeptMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {:?} object CKA_LABEL={} CKA_ID={}", self.token, self.key_arn, self.object_id)
    }
}

impl KeptMaterial {
    /// The object as a KMS tag value (the key ARN is the key's own, so it is left out).
    pub fn tag_value(&self) -> String {
        format!("pkcs11 token={} CKA_ID={}", self.token, self.object_id)
    }

    /// An object of an earlier version that was generated and never named.
    pub fn is_legacy_pending(&self) -> bool {
        self.object_id == LEGACY_PENDING_ID
    }
}

/// Whether `id` looks like a KMS KeyMaterialId (64 hex digits): objects of earlier versions
/// carry one as their CKA_ID.
pub fn is_kms_material_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key id at the end of a key ARN (`…:key/<id>`), or the input when it has none.
pub(crate) fn key_id_of(arn: &str) -> &str {
    arn.rsplit_once(":key/").map(|(_, id)| id).unwrap_or(arn)
}

/// Whether material labelled `label` belongs to the key `key_arn`. Related multi-Region keys
/// share their key id (`mrk-…`) and their material, so for them the id decides, not the Region.
pub(crate) fn label_matches(label: &str, key_arn: &str) -> bool {
    let id = key_id_of(key_arn);
    label == key_arn || (id.starts_with("mrk-") && key_id_of(label) == id)
}
