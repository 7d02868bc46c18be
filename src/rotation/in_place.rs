//! In-place strategy: import NEW_KEY_MATERIAL, then RotateKeyOnDemand; key id and alias stay.
//!
//! It never deletes old material: it stays associated, so old ciphertext decrypts.

use super::*;

impl Rotator<'_> {
    pub(super) async fn in_place(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
    ) -> Result<(String, Option<String>), RotationError> {
        let key = plan.key_arn.as_str();
        // A ciphertext made before the rotation must still decrypt after it.
        let before = if plan.progress == Progress::FirstImport { None } else { Some(self.encrypt_probe(key).await?) };
        let material = match &plan.progress {
            Progress::Fresh | Progress::FirstImport => {
                let first = plan.progress == Progress::FirstImport;
                let id = self.import(req, plan, key, !first).await?;
                if first {
                    id
                } else {
                    let id = id.ok_or_else(|| {
                        RotationError::Verification("ImportKeyMaterial returned no KeyMaterialId".into())
                    })?;
                    self.import_into_replicas(req, plan, &id).await?;
                    self.rotate_on_demand(req, key, &id).await?;
                    Some(id)
                }
            }
            Progress::Imported { material_id } => {
                if !self.read(key).await?.tags.contains_key(PENDING_TAG) {
                    self.tag(key, &[(PENDING_TAG, material_id)]).await?;
                }
                // Stopped between ImportKeyMaterial and naming: the pending object is this material.
                self.name_kept(req, key, material_id)?;
                self.import_into_replicas(req, plan, material_id).await?;
                self.rotate_on_demand(req, key, material_id).await?;
                Some(material_id.clone())
            }
            Progress::Rotated { material_id } => {
                // A first import stopped before naming: the pending object is this material.
                // (Already current in KMS: a source that lacks it is reported, not a blocker.)
                match self.name_kept(req, key, material_id) {
                    Err(RotationError::Hsm(e @ hsm::HsmError::PendingNotKept { .. })) => {
                        tracing::warn!("{e}");
                    }
                    other => other?,
                }
                Some(material_id.clone())
            }
            Progress::SuccessorCreated { .. } | Progress::Swapped { .. } => {
                unreachable!("only alias-swap plans have a successor")
            }
        };
        let material = self.verify(req, key, material.as_deref(), before.as_ref()).await?;
        self.record(req, key, material.as_deref()).await?;
        self.untag_replicas(plan).await?;
        Ok((plan.key_arn.clone(), material))
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
