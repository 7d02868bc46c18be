//! Kept material: how a persistent token object is named (by the KMS key ARN and key material
//! id) so that it can be found and imported again, and which key a label belongs to.

use std::fmt;

/// `CKA_ID` of a kept material before KMS has given it an id.
pub const PENDING_ID: &str = "pending";

/// Key material kept on a token as a persistent object, found again by its attributes alone:
/// `CKA_LABEL` is the KMS key ARN and `CKA_ID` the KMS `KeyMaterialId` (or [`PENDING_ID`]
/// between generation and ImportKeyMaterial).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptMaterial {
    /// The token's label.
    pub token: String,
    /// `CKA_LABEL`: the ARN of the key the material was generated for.
    pub key_arn: String,
    /// `CKA_ID`: the KMS key material id; `None` while pending.
    pub key_material_id: Option<String>,
}

impl fmt::Display for KeptMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token {:?} object CKA_LABEL={} CKA_ID={}",
            self.token,
            self.key_arn,
            self.key_material_id.as_deref().unwrap_or(PENDING_ID)
        )
    }
}

impl KeptMaterial {
    /// The object as a KMS tag value (the key ARN is the key's own, so it is left out).
    pub fn tag_value(&self) -> String {
        format!("pkcs11 token={} CKA_ID={}", self.token, self.key_material_id.as_deref().unwrap_or(PENDING_ID))
    }
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
