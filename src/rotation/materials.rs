//! What KMS lists for a key, and whether the HSM holds each material.
//!
//! Reads only.

use super::*;
use crate::rotation::hsm::KeptMaterial;

/// One key material of a key: what KMS says about it, and whether the HSM holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterialStatus {
    pub key_material_id: String,
    /// KMS KeyMaterialState: CURRENT, NON_CURRENT, PENDING_ROTATION, …
    pub state: Option<String>,
    /// IMPORTED or PENDING_IMPORT (deleted or expired: needs `reimport`).
    pub import_state: Option<String>,
    pub expiration_model: Option<String>,
    pub valid_to: Option<DateTime<Utc>>,
    pub rotation_date: Option<DateTime<Utc>>,
    /// Whether the HSM holds this material, so that it can be imported again.
    pub held: bool,
    pub hsm_object: Option<String>,
}

impl MaterialStatus {
    pub fn needs_import(&self) -> bool {
        self.import_state.as_deref() == Some("PENDING_IMPORT")
    }
}

/// Every material of a key, and where the list came from.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterialsReport {
    pub key_arn: String,
    pub key_state: String,
    /// `ListKeyRotations` or the DescribeKey fallback.
    pub listed_by: String,
    /// Set when the list may be incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub materials: Vec<MaterialStatus>,
    /// Kept objects not in `materials`: pending (generated, not imported yet), or not listed
    /// because the endpoint lists only the current material.
    pub held_not_listed: Vec<String>,
}

impl MaterialsReport {
    /// A table for a person.
    pub fn table(&self) -> String {
        let day = |t: &Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or("-".into());
        let mut out =
            format!("key:        {}\nstate:      {}\nlisted by:  {}\n", self.key_arn, self.key_state, self.listed_by);
        if let Some(n) = &self.note {
            out += &format!("note:       {n}\n");
        }
        out += &format!(
            "\n{:<64}  {:<17}  {:<14}  {:<10}  {:<10}  {:<10}  {}\n",
            "KEY MATERIAL ID", "STATE", "IMPORT", "ROTATED", "VALID TO", "HSM", "HSM OBJECT"
        );
        for m in &self.materials {
            out += &format!(
                "{:<64}  {:<17}  {:<14}  {:<10}  {:<10}  {:<10}  {}\n",
                m.key_material_id,
                m.state.as_deref().unwrap_or("-"),
                m.import_state.as_deref().unwrap_or("-"),
                day(&m.rotation_date),
                m.valid_to.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(|| {
                    if m.expiration_model.as_deref() == Some("KEY_MATERIAL_EXPIRES") {
                        "?".into()
                    } else {
                        "never".into()
                    }
                }),
                if m.held { "held" } else { "NOT HELD" },
                m.hsm_object.as_deref().unwrap_or("-"),
            );
        }
        for h in &self.held_not_listed {
            out += &format!("held, not in the list above: {h}\n");
        }
        if self.materials.iter().any(|m| !m.held) {
            out += "\nNOT HELD: KMS is the only holder of that material. Once it expires or is deleted, \
                    its ciphertext cannot be decrypted again.\n";
        }
        out
    }
}

/// Marks which materials the HSM holds.
pub(super) fn mark_held(materials: &mut [MaterialStatus], kept: &[KeptMaterial]) {
    for m in materials {
        if let Some(k) = kept.iter().find(|k| k.key_material_id.as_deref() == Some(m.key_material_id.as_str())) {
            m.held = true;
            m.hsm_object = Some(k.to_string());
        }
    }
}

/// Whether the HSM holds the current material among `materials`; `None` without one.
fn current_custody(materials: &[MaterialStatus]) -> Option<bool> {
    materials.iter().find(|m| m.state.as_deref() == Some("CURRENT")).map(|m| m.held)
}

/// A ListKeyRotations entry as a status (not yet marked held).
pub(super) fn from_entry(r: &aws_sdk_kms::types::RotationsListEntry) -> Option<MaterialStatus> {
    Some(MaterialStatus {
        key_material_id: r.key_material_id()?.to_string(),
        state: r.key_material_state().map(|s| s.as_str().to_string()),
        import_state: r.import_state().map(|s| s.as_str().to_string()),
        expiration_model: r.expiration_model().map(|s| s.as_str().to_string()),
        valid_to: r.valid_to().and_then(to_chrono),
        rotation_date: r.rotation_date().and_then(to_chrono),
        held: false,
        hsm_object: None,
    })
}

impl Rotator<'_> {
    /// Every key material KMS lists for `key` (ListKeyRotations, ALL_KEY_MATERIAL), and
    /// whether the HSM holds each.
    pub async fn materials(&self, key: &str) -> Result<Vec<MaterialStatus>, RotationError> {
        Ok(self.materials_report(key).await?.materials)
    }

    /// Whether the HSM holds the key's current material (KeyMaterialState CURRENT): `None`
    /// when KMS names no current material (none imported yet). For the auditor's report.
    pub async fn holds_current_material(&self, key: &str) -> Result<Option<bool>, RotationError> {
        Ok(current_custody(&self.materials(key).await?))
    }

    /// [`Self::materials`] with where the list came from, for the CLI.
    pub async fn materials_report(&self, key: &str) -> Result<MaterialsReport, RotationError> {
        KeyRef::parse(key).map_err(|e| RotationError::Refused(e.to_string()))?;
        let k = self.read(key).await?;
        self.report_for(&k).await
    }

    pub(super) async fn report_for(&self, k: &KeyView) -> Result<MaterialsReport, RotationError> {
        let (mut materials, listed_by, note) = match &k.rotations {
            Some(rs) => {
                (rs.iter().filter_map(from_entry).collect::<Vec<_>>(), "ListKeyRotations (ALL_KEY_MATERIAL)", None)
            }
            None => {
                // Without ListKeyRotations (LocalStack) only the current material is known.
                let m = self.kms().describe_key().key_id(&k.arn).send().await.map_err(aws_err("kms:DescribeKey"))?;
                let m = m.key_metadata();
                let current = k.current_material.as_ref().map(|id| MaterialStatus {
                    key_material_id: id.clone(),
                    state: Some("CURRENT".into()),
                    import_state: Some(
                        if k.state == KeyState::PendingImport { "PENDING_IMPORT" } else { "IMPORTED" }.into(),
                    ),
                    expiration_model: m.and_then(|m| m.expiration_model()).map(|e| e.as_str().to_string()),
                    valid_to: m.and_then(|m| m.valid_to()).and_then(to_chrono),
                    rotation_date: None,
                    held: false,
                    hsm_object: None,
                });
                (
                    current.into_iter().collect(),
                    "DescribeKey (CurrentKeyMaterialId)",
                    Some("this endpoint has no ListKeyRotations: only the current material is listed".to_string()),
                )
            }
        };
        let kept = self.source.kept_materials(&k.arn)?;
        mark_held(&mut materials, &kept);
        let held_not_listed = kept
            .iter()
            .filter(|h| !materials.iter().any(|m| Some(&m.key_material_id) == h.key_material_id.as_ref()))
            .map(|h| h.to_string())
            .collect();
        Ok(MaterialsReport {
            key_arn: k.arn.clone(),
            key_state: k.state.as_str().to_string(),
            listed_by: listed_by.into(),
            note,
            materials,
            held_not_listed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::types::{ImportState, KeyMaterialState, RotationsListEntry};

    fn entry(id: &str, state: KeyMaterialState, import: ImportState) -> RotationsListEntry {
        RotationsListEntry::builder().key_material_id(id).key_material_state(state).import_state(import).build()
    }

    #[test]
    fn every_listed_material_is_shown_held_or_not_held() {
        let listed = [
            entry("a".repeat(64).as_str(), KeyMaterialState::NonCurrent, ImportState::PendingImport),
            entry("b".repeat(64).as_str(), KeyMaterialState::Current, ImportState::Imported),
        ];
        let mut materials: Vec<_> = listed.iter().filter_map(from_entry).collect();
        let kept = [KeptMaterial { token: "t".into(), key_arn: "arn:k".into(), key_material_id: Some("b".repeat(64)) }];
        mark_held(&mut materials, &kept);
        assert_eq!(materials.len(), 2);
        // The current material is held; an older one that is not does not change that.
        assert_eq!(current_custody(&materials), Some(true));
        assert_eq!(current_custody(&materials[..1]), None);
        let mut forgotten = materials.clone();
        forgotten[1].held = false;
        assert_eq!(current_custody(&forgotten), Some(false));
        assert!(!materials[0].held && materials[0].needs_import(), "{:?}", materials[0]);
        assert!(materials[1].held && !materials[1].needs_import());
        assert!(materials[1].hsm_object.as_deref().unwrap().contains("CKA_ID=bbbb"));
        let report = MaterialsReport {
            key_arn: "arn:k".into(),
            key_state: "Enabled".into(),
            listed_by: "ListKeyRotations (ALL_KEY_MATERIAL)".into(),
            note: None,
            materials,
            held_not_listed: vec![],
        };
        let table = report.table();
        assert!(table.contains("NOT HELD") && table.contains(" held "), "{table}");
    }
}
