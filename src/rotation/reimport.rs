//! Re-import: the same material back into KMS after it expired or was deleted
//! (DeleteImportedKeyMaterial), from the HSM that kept it. KMS accepts only that exact material
//! (ImportType EXISTING_KEY_MATERIAL with its KeyMaterialId) and refuses any other.

use super::*;
use crate::rotation::import::ImportCall;

/// The expiry a re-import gives the material (ImportKeyMaterial ExpirationModel / ValidTo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// KEY_MATERIAL_DOES_NOT_EXPIRE.
    Never,
    /// KEY_MATERIAL_EXPIRES at this time (at most 365 days after the request, says KMS).
    On(DateTime<Utc>),
}

/// What to re-import.
#[derive(Debug, Clone)]
pub struct ReimportRequest {
    /// Alias, alias ARN, key id or key ARN.
    pub key: String,
    /// One material, by its id or a unique prefix of at least 8 hex digits; `None`: every
    /// material KMS says needs it (PENDING_IMPORT) and, with `expiry`, every one that expires.
    pub key_material_id: Option<String>,
    /// Print the plan and change nothing.
    pub dry_run: bool,
    /// The new expiry. `None`: the material does not expire (as before this option existed),
    /// and only material waiting for import is taken when no id is given.
    pub expiry: Option<Expiration>,
}

/// One material re-imported (or, with `dry_run`, that would be).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reimported {
    pub key_material_id: String,
    pub hsm_object: String,
    pub imported: bool,
    /// The expiry it was imported with (`None`: it does not expire).
    pub valid_to: Option<DateTime<Utc>>,
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
    /// What could not be checked afterwards (an endpoint without ListKeyRotations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
            let until = m
                .valid_to
                .map(|t| format!("expires {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
                .unwrap_or("does not expire".into());
            writeln!(f, "{verb} {} from {} ({until})", m.key_material_id, m.hsm_object)?;
        }
        if let Some(n) = &self.note {
            writeln!(f, "note:       {n}")?;
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
    ///
    /// With `expiry`, a material that is still imported gets that expiry: ImportKeyMaterial
    /// "can also set or update the expiration model and expiration date" of imported material,
    /// on a key that is Enabled or PendingImport (API reference). KMS's listing must show the
    /// new expiry afterwards; if KMS kept the old one (the ValidTo parameter's text says a
    /// change needs DeleteImportedKeyMaterial first), this says so and deletes nothing.
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
        if let Some(Expiration::On(t)) = req.expiry {
            if t <= Utc::now() {
                return Err(RotationError::Refused(format!(
                    "--valid-to {} is not in the future",
                    t.format("%Y-%m-%dT%H:%M:%SZ")
                )));
            }
        }
        let k = self.read(&req.key).await?;
        if k.origin != Some(OriginType::External) {
            return Err(RotationError::Refused(format!("key {} has no imported (EXTERNAL) key material", k.arn)));
        }
        let listed = self.report_for(&k).await?.materials;
        let ids: Vec<String> = match &req.key_material_id {
            Some(id) => vec![resolve_material_id(&k.arn, id, &listed)?],
            None => listed
                .iter()
                .filter(|m| {
                    m.needs_import()
                        || (req.expiry.is_some() && m.expiration_model.as_deref() == Some("KEY_MATERIAL_EXPIRES"))
                })
                .map(|m| m.key_material_id.clone())
                .collect(),
        };
        let mut kept = Vec::new();
        for id in &ids {
            kept.push(self.custody_in(&k, id)?.require(&k.arn, id)?);
        }
        let valid_to = match req.expiry {
            Some(Expiration::On(t)) => Some(t),
            _ => None,
        };
        let mut report = ReimportReport {
            key_arn: k.arn.clone(),
            dry_run: req.dry_run,
            materials: kept
                .iter()
                .zip(&ids)
                .map(|(o, id)| Reimported {
                    key_material_id: id.clone(),
                    hsm_object: o.to_string(),
                    imported: false,
                    valid_to,
                })
                .collect(),
            key_state: k.state.as_str().to_string(),
            wrapping_algorithm: None,
            note: None,
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
                valid_to,
                object_id: Some(&o.object_id),
            };
            self.send_import(self.kms(), &k.arn, &params, wrapped, call).await?;
            r.imported = true;
            self.say(Step::ImportKeyMaterial, &format!("re-imported key material {}", r.key_material_id));
        }
        // KMS must now list each as imported (with the expiry asked for); without
        // ListKeyRotations, the current material's key must be Enabled again.
        let after = self.read(&k.arn).await?;
        report.key_state = after.state.as_str().to_string();
        match &after.rotations {
            Some(rs) => {
                for r in &report.materials {
                    let Some(e) = rs.iter().find(|e| e.key_material_id() == Some(r.key_material_id.as_str())) else {
                        return Err(RotationError::Verification(format!(
                            "KMS does not list key material {} after the re-import",
                            r.key_material_id
                        )));
                    };
                    if e.import_state().map(|s| s.as_str()) != Some("IMPORTED") {
                        return Err(RotationError::Verification(format!(
                            "KMS does not list key material {} as IMPORTED after the re-import",
                            r.key_material_id
                        )));
                    }
                    if let Some(expiry) = req.expiry {
                        check_expiry(&after.arn, &r.key_material_id, e, expiry)?;
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
                if req.expiry.is_some() {
                    report.note = Some(
                        "the new expiry was not checked: this endpoint lists no key material (no ListKeyRotations)"
                            .into(),
                    );
                }
            }
        }
        self.say(Step::Verify, &format!("key {} is {}", after.arn, after.state.as_str()));
        tracing::info!(
            target: "audit",
            key = %report.key_arn,
            materials = %report.materials.iter().map(|m| m.key_material_id.as_str()).collect::<Vec<_>>().join(","),
            hsm_objects = %report.materials.iter().map(|m| m.hsm_object.as_str()).collect::<Vec<_>>().join("; "),
            valid_to = %valid_to.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
            algorithm = %algorithm,
            region = %self.aws.region(),
            host = %hostname(),
            "key material re-imported"
        );
        Ok(report)
    }
}

/// A material id, or a unique prefix of one KMS lists for the key (at least 8 hex digits, so
/// that an annotation may carry a short form).
fn resolve_material_id(key_arn: &str, given: &str, listed: &[MaterialStatus]) -> Result<String, RotationError> {
    let given = given.trim().to_ascii_lowercase();
    if hsm::is_kms_material_id(&given) {
        return Ok(given);
    }
    if given.len() < 8 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RotationError::Refused(format!(
            "--key-material-id {given:?}: give the 64-hex-digit KeyMaterialId, or at least its first 8 digits"
        )));
    }
    let matching: Vec<&str> =
        listed.iter().map(|m| m.key_material_id.as_str()).filter(|id| id.starts_with(&given)).collect();
    match matching[..] {
        [one] => Ok(one.to_string()),
        [] => Err(RotationError::Refused(format!("KMS lists no key material of {key_arn} starting with {given}"))),
        _ => Err(RotationError::Refused(format!(
            "{given} starts several key materials of {key_arn} ({}): give more digits",
            matching.join(", ")
        ))),
    }
}

/// Whether KMS lists the expiry the re-import asked for.
fn check_expiry(
    key_arn: &str,
    material: &str,
    e: &aws_sdk_kms::types::RotationsListEntry,
    expiry: Expiration,
) -> Result<(), RotationError> {
    let model = e.expiration_model().map(|m| m.as_str());
    let listed = e.valid_to().and_then(to_chrono);
    let took = match expiry {
        Expiration::Never => model == Some("KEY_MATERIAL_DOES_NOT_EXPIRE"),
        Expiration::On(t) => {
            model == Some("KEY_MATERIAL_EXPIRES") && listed.is_some_and(|l| (l - t).num_seconds().abs() <= 60)
        }
    };
    if took {
        return Ok(());
    }
    let now_listed = match (model, listed) {
        (_, Some(l)) => format!("it still expires {}", l.format("%Y-%m-%dT%H:%M:%SZ")),
        (Some(m), None) => format!("it is still {m}"),
        (None, None) => "KMS shows no expiry for it".into(),
    };
    Err(RotationError::Verification(format!(
        "KMS kept the old expiry of key material {material} of {key_arn} ({now_listed}). The ImportKeyMaterial \
         reference says, under ValidTo, that a change needs DeleteImportedKeyMaterial first. This tool deletes \
         nothing: an operator with the deletion role may delete that material (the key is unusable until it is \
         imported again) and at once run `kms-rotation-guard reimport --key {key_arn} --key-material-id {material}` \
         with the new expiry"
    )))
}
