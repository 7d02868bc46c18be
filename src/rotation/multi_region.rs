//! Multi-Region keys: KMS does not copy imported material to replicas. The order, from the
//! ImportKeyMaterial API reference: NEW_KEY_MATERIAL into the primary (state
//! PENDING_MULTI_REGION_IMPORT_AND_ROTATION), the same material with EXISTING_KEY_MATERIAL and its
//! KeyMaterialId into every replica, then RotateKeyOnDemand on the primary. A replica that does
//! not take it stops the rotation before RotateKeyOnDemand, so nothing is half-rotated.

use super::*;
use crate::rotation::import::ImportCall;

/// A replica of a multi-Region primary key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replica {
    pub arn: String,
    pub region: String,
}

impl Rotator<'_> {
    /// Imports `material` (already in the primary, kept in the HSM) into every replica, and
    /// checks each one lists it, before the primary may rotate.
    pub(super) async fn import_into_replicas(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
        material: &str,
        kept: Option<&hsm::KeptMaterial>,
    ) -> Result<(), RotationError> {
        if plan.replicas.is_empty() {
            return Ok(());
        }
        // The object KMS names for this material (found once, and only if a replica needs it).
        let mut object = kept.cloned();
        for r in &plan.replicas {
            let blocked = |e: RotationError| RotationError::Replica {
                replica: format!("{} ({})", r.arn, r.region),
                material: material.to_owned(),
                reason: e.to_string(),
            };
            let kms = self.aws.kms_in_region(&r.region);
            // A re-run skips replicas that took the material already: KMS refuses the same
            // material twice while it is pending (KMSInvalidStateException).
            if self.replica_tag(&kms, &r.arn).await.map_err(blocked)?.as_deref() != Some(material) {
                let params = self
                    .import_parameters(&kms, &r.arn, plan.algorithm, plan.wrapping_key_spec)
                    .await
                    .map_err(blocked)?;
                if object.is_none() {
                    object = Some(self.custody_of(&plan.key_arn, material).await?.require(&plan.key_arn, material)?);
                }
                let kept = object.as_ref().expect("found above");
                let wrapped = self.wrap(Some(kept), &params, plan.algorithm, plan.wrapping_key_spec)?;
                let call = ImportCall {
                    import_type: Some(ImportType::ExistingKeyMaterial),
                    key_material_id: Some(material),
                    valid_to: req.valid_to,
                    object_id: Some(&kept.object_id),
                };
                self.send_import(&kms, &r.arn, &params, wrapped, call).await.map_err(blocked)?;
                // Tags are per replica (KMS does not synchronise them).
                let tag = Tag::builder().tag_key(PENDING_TAG).tag_value(material).build().expect("key and value set");
                kms.tag_resource()
                    .key_id(&r.arn)
                    .tags(tag)
                    .send()
                    .await
                    .map_err(aws_err("kms:TagResource"))
                    .map_err(blocked)?;
            }
            if !self.replica_holds(&kms, &r.arn, material).await.map_err(blocked)? {
                return Err(blocked(RotationError::Verification(
                    "ListKeyRotations on the replica does not list it as IMPORTED".into(),
                )));
            }
        }
        let names: Vec<&str> = plan.replicas.iter().map(|r| r.region.as_str()).collect();
        self.step(
            req,
            Step::ImportIntoReplicas,
            &format!("imported key material {material} into the replicas in {}", names.join(", ")),
        )
    }

    async fn replica_tag(&self, kms: &aws_sdk_kms::Client, replica: &str) -> Result<Option<String>, RotationError> {
        let out = kms.list_resource_tags().key_id(replica).send().await.map_err(aws_err("kms:ListResourceTags"))?;
        Ok(out.tags().iter().find(|t| t.tag_key() == PENDING_TAG).map(|t| t.tag_value().to_string()))
    }

    /// Whether the replica lists `material` as imported; `true` when it cannot list (the
    /// import itself succeeded).
    async fn replica_holds(
        &self,
        kms: &aws_sdk_kms::Client,
        replica: &str,
        material: &str,
    ) -> Result<bool, RotationError> {
        match kms
            .list_key_rotations()
            .key_id(replica)
            .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
            .send()
            .await
        {
            Ok(o) => Ok(o.rotations().iter().any(|r| {
                r.key_material_id() == Some(material) && r.import_state().map(|s| s.as_str()) == Some("IMPORTED")
            })),
            Err(e) if classify(&e).kind == FailureKind::Unsupported => Ok(true),
            Err(e) => Err(aws_err("kms:ListKeyRotations")(e)),
        }
    }
}
