//! Re-import: the same material back into KMS after it expired or was deleted
//! (DeleteImportedKeyMaterial), from the HSM that kept it. KMS accepts only that exact material
//! (ImportType EXISTING_KEY_MATERIAL with its KeyMaterialId) and refuses any other.

use super::*;
use crate::rotation::import::ImportCall;

/// What to re-import.
#[derive(Debug, Clone)]
pub struct ReimportRequest {
    /// Alias, alias ARN, key id or key ARN.
    pub key: String,
    /// One material; `None`: every material KMS says needs it (PENDING_IMPORT).
    pub key_material_id: Option<String>,
    /// Print the plan and change nothing.
    pub dry_run: bool,
}

/// One material re-imported (or, with `dry_run`, that would be).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reimported {
    pub key_material_id: String,
    pub hsm_object: String,
    pub imported: bool,
}

/// What a re-import did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReimportReport {
    pub key_arn: String,
    pub dry_run: bool,
    pub materials: Vec<Reimported>,
    /// The key state after the re-import (before, with `dry_run`).
    pub key_state: String,
    pub wrapping_algorithm: Option<String>,
}

impl fmt::Display for ReimportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key:        {}", self.key_arn)?;
        writeln!(f, "key state:  {}", self.key_state)?;
        if self.materials.is_empty() {
            return write!(f, "nothing to re-import: KMS lists no material waiting for import");
        }
        for m in &self.materials {
            let verb = if m.imported { "re-imported" } else { "would re-import" };
            writeln!(f, "{verb} {} from {}", m.key_material_id, m.hsm_object)?;
        }
        match &self.wrapping_algorithm {
            Some(a) => write!(f, "wrapping:   {a}"),
            None => write!(f, "(dry run: nothing imported)"),
        }
    }
}

impl Rotator<'_> {
    /// GetParametersForImport, wrap the kept material inside the HSM, ImportKeyMaterial with
    /// EXISTING_KEY_MATERIAL and its KeyMaterialId; for one material or every one that needs it.
    pub async fn reimport(&self, req: &ReimportRequest) -> Result<ReimportReport, RotationError> {
        let reference = KeyRef::parse(&req.key).map_err(|e| RotationError::Refused(e.to_string()))?;
        super::plan::refuse_china(&req.key, &reference, &self.aws.region())?;
        if !self.source.keeps_material() {
            return Err(hsm::HsmError::CannotKeep {
                source_name: self.source.name().to_owned(),
                action: "re-import material (it never kept any)",
            }
            .into());
        }
        let k = self.read(&req.key).await?;
        if k.origin != Some(OriginType::External) {
            return Err(RotationError::Refused(format!("key {} has no imported (EXTERNAL) key material", k.arn)));
        }
        let ids: Vec<String> = match &req.key_material_id {
            Some(id) => vec![id.clone()],
            None => self
                .report_for(&k)
                .await?
                .materials
                .into_iter()
                .filter(|m| m.needs_import())
                .map(|m| m.key_material_id)
                .collect(),
        };
        let mut kept = Vec::new();
        for id in &ids {
            let k_obj = self
                .source
                .find_kept(&k.arn, id)?
                .ok_or_else(|| hsm::HsmError::NotKept { key_arn: k.arn.clone(), key_material_id: id.clone() })?;
            kept.push(k_obj);
        }
        let mut report = ReimportReport {
            key_arn: k.arn.clone(),
            dry_run: req.dry_run,
            materials: kept
                .iter()
                .map(|o| Reimported {
                    key_material_id: o.key_material_id.clone().unwrap_or_default(),
                    hsm_object: o.to_string(),
                    imported: false,
                })
                .collect(),
            key_state: k.state.as_str().to_string(),
            wrapping_algorithm: None,
        };
        if req.dry_run || kept.is_empty() {
            return Ok(report);
        }
        let algorithm = self.source.choose(self.wrapping.0)?;
        report.wrapping_algorithm = Some(algorithm.as_str().to_string());
        for (o, r) in kept.iter().zip(report.materials.iter_mut()) {
            let params = self.import_parameters(self.kms(), &k.arn, algorithm, self.wrapping.1).await?;
            self.say(Step::GetParametersForImport, &format!("got a {} wrapping key and import token", self.wrapping.1));
            let wrapped = self.wrap(Some(o), &params, algorithm, self.wrapping.1)?;
            self.say(Step::GenerateAndWrap, &format!("wrapped the kept material in the HSM with {algorithm}: {o}"));
            let call = ImportCall {
                import_type: Some(ImportType::ExistingKeyMaterial),
                key_material_id: Some(&r.key_material_id),
                valid_to: None,
            };
            self.send_import(self.kms(), &k.arn, &params, wrapped, call).await?;
            r.imported = true;
            self.say(Step::ImportKeyMaterial, &format!("re-imported key material {}", r.key_material_id));
        }
        // KMS must now list each as imported; without ListKeyRotations, the current material's
        // key must be Enabled again.
        let after = self.read(&k.arn).await?;
        report.key_state = after.state.as_str().to_string();
        match &after.rotations {
            Some(rs) => {
                for r in &report.materials {
                    let ok = rs.iter().any(|e| {
                        e.key_material_id() == Some(r.key_material_id.as_str())
                            && e.import_state().map(|s| s.as_str()) == Some("IMPORTED")
                    });
                    if !ok {
                        return Err(RotationError::Verification(format!(
                            "KMS does not list key material {} as IMPORTED after the re-import",
                            r.key_material_id
                        )));
                    }
                }
            }
            None => {
                if report
                    .materials
                    .iter()
                    .any(|r| after.current_material.as_deref() == Some(r.key_material_id.as_str()))
                    && after.state != KeyState::Enabled
                {
                    return Err(RotationError::Verification(format!(
                        "key {} is {} after re-importing its current material",
                        after.arn,
                        after.state.as_str()
                    )));
                }
            }
        }
        self.say(Step::Verify, &format!("key {} is {}", after.arn, after.state.as_str()));
        tracing::info!(
            target: "audit",
            key = %report.key_arn,
            materials = %report.materials.iter().map(|m| m.key_material_id.as_str()).collect::<Vec<_>>().join(","),
            hsm_objects = %report.materials.iter().map(|m| m.hsm_object.as_str()).collect::<Vec<_>>().join("; "),
            algorithm = %algorithm,
            region = %self.aws.region(),
            host = %hostname(),
            "key material re-imported"
        );
        Ok(report)
    }
}
