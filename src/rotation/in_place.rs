//! In-place strategy: import NEW_KEY_MATERIAL, then RotateKeyOnDemand; key id and alias stay.
//!
//! It never deletes old material: it stays associated, so old ciphertext decrypts.

use super::*;
use crate::rotation::custody;
use crate::rotation::hsm::KeptMaterial;

impl Rotator<'_> {
    pub(super) async fn in_place(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
    ) -> Result<(String, Option<String>, Option<KeptMaterial>), RotationError> {
        let key = plan.key_arn.as_str();
        // A ciphertext made before the rotation must still decrypt after it.
        let before = if plan.progress == Progress::FirstImport { None } else { Some(self.encrypt_probe(key).await?) };
        let resume = plan.resume_object.as_deref();
        let (material, kept) = match &plan.progress {
            Progress::Fresh | Progress::FirstImport | Progress::Kept { .. } => {
                let first = plan.progress == Progress::FirstImport;
                let (id, kept) = self.import(req, plan, key, !first, resume).await?;
                if first {
                    (id, kept)
                } else {
                    let id = id.ok_or_else(|| {
                        RotationError::Verification("ImportKeyMaterial returned no KeyMaterialId".into())
                    })?;
                    self.import_into_replicas(req, plan, &id, kept.as_ref()).await?;
                    self.rotate_on_demand(req, key, &id).await?;
                    (Some(id), kept)
                }
            }
            Progress::Imported { material_id } => {
                let k = self.read(key).await?;
                // Stopped between ImportKeyMaterial and the pending tag: the listing named it.
                let kept = match self.custody_in(&k, material_id)? {
                    custody::Custody::Held(kept) => Some(kept),
                    custody::Custody::NotHeld if !self.source.keeps_material() => None,
                    // A run of an earlier version stopped before it renamed its object: that
                    // version imported "the" pending object of the key, so exactly one such
                    // object is this material (KMS checks it again on every replica import).
                    custody::Custody::NotHeld => match self.legacy_pending(&k.arn)? {
                        Some(kept) => Some(KeptMaterial { key_material_id: Some(material_id.clone()), ..kept }),
                        None => {
                            return Err(hsm::HsmError::PendingNotKept { key_arn: key.to_string() }.into());
                        }
                    },
                    other => {
                        // KMS holds new material the HSM cannot give again: rotating to it
                        // would make KMS its only holder.
                        return Err(other.require(key, material_id).expect_err("not held").into());
                    }
                };
                if k.tags.get(PENDING_TAG).and_then(|v| custody::parse_pending_tag(v).0) != Some(material_id.as_str()) {
                    let value = match &kept {
                        Some(o) => custody::pending_tag_value(Some(material_id), &o.object_id),
                        None => material_id.clone(),
                    };
                    self.tag(key, &[(PENDING_TAG, &value)]).await?;
                }
                self.import_into_replicas(req, plan, material_id, kept.as_ref()).await?;
                self.rotate_on_demand(req, key, material_id).await?;
                (Some(material_id.clone()), kept)
            }
            // A first import (or a rotation) stopped after RotateKeyOnDemand: verify and record.
            Progress::Rotated { material_id } => (Some(material_id.clone()), None),
            Progress::SuccessorCreated { .. } | Progress::Swapped { .. } => {
                unreachable!("only alias-swap plans have a successor")
            }
        };
        let material = self.verify(req, key, material.as_deref(), before.as_ref()).await?;
        let kept = match kept {
            Some(k) if k.key_material_id == material => Some(k),
            _ => self.held(key, material.as_deref()).await?,
        };
        self.record(req, key, material.as_deref(), kept.as_ref(), &plan.replicas).await?;
        Ok((plan.key_arn.clone(), material, kept))
    }

    /// RotateKeyOnDemand, unless the material is already current. A retried call whose first
    /// attempt succeeded is recognised by reading the key again, never rotated twice.
    pub(super) async fn rotate_on_demand(
        &self,
        req: &RotationRequest,
        key: &str,
        material: &str,
    ) -> Result<(), RotationError> {
        let current = self.current_material(key).await?;
        if current.as_deref() != Some(material) {
            if let Err(e) = self.kms().rotate_key_on_demand().key_id(key).send().await {
                let err = aws_err("kms:RotateKeyOnDemand")(e);
                if self.current_material(key).await?.as_deref() != Some(material) {
                    return Err(err);
                }
            }
        }
        self.step(req, Step::Rotate, &format!("rotated {key} to key material {material}"))
    }
}
