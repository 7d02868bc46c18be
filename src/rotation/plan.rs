//! Plan: read the key, refuse what must not be rotated, and find where an earlier run stopped.
//!
//! Reads only; changes nothing.

use super::*;
use crate::rotation::custody;

impl Rotator<'_> {
    pub async fn plan(&self, req: &RotationRequest) -> Result<RotationPlan, RotationError> {
        let reference = KeyRef::parse(&req.key).map_err(|e| RotationError::Refused(e.to_string()))?;
        refuse_china(&req.key, &reference, &self.aws.region())?;
        let k = self.read(&req.key).await?;
        refuse_china(&k.arn, &KeyRef::parse(&k.arn).unwrap_or(reference), &self.aws.region())?;
        if k.origin != Some(OriginType::External) {
            return Err(RotationError::Refused(format!(
                "key {} has origin {}: only imported (EXTERNAL) key material is rotated by this tool; \
                 AWS_KMS keys use automatic rotation (EnableKeyRotation)",
                k.arn,
                k.origin.as_ref().map(|o| o.as_str()).unwrap_or("unknown")
            )));
        }
        if req.valid_to.is_some() && !self.source.keeps_material() {
            return Err(RotationError::Refused(format!(
                "--valid-to makes KMS delete the material at that time, and {} does not keep it, so every \
                 ciphertext under it would be lost for good: use an HSM (--hsm pkcs11), which keeps it for reimport",
                self.source.name()
            )));
        }
        if k.multi_region {
            if !k.primary {
                return Err(RotationError::Refused(format!(
                    "key {} is a multi-Region replica: new material goes into the primary key, and the rotation \
                     imports it into every replica; rotate the primary",
                    k.arn
                )));
            }
            if req.strategy == Strategy::AliasSwap {
                return Err(RotationError::Refused(format!(
                    "key {} is multi-Region: alias-swap would need a new key and new replicas in every Region; \
                     use in-place",
                    k.arn
                )));
            }
            if !self.source.keeps_material() {
                return Err(RotationError::Refused(format!(
                    "key {} is multi-Region: every replica needs the same material, and {} does not keep it",
                    k.arn,
                    self.source.name()
                )));
            }
        }
        // After DeleteImportedKeyMaterial or expiry a key is PendingImport again, but only its
        // own material brings its ciphertext back: new material would not.
        if k.state == KeyState::PendingImport && (k.current_material.is_some() || k.tags.contains_key(MATERIAL_TAG)) {
            return Err(RotationError::Refused(format!(
                "key {} is PendingImport but has had key material (deleted or expired): import that same material \
                 again with `kms-rotation-guard reimport --key {}`; new material would not decrypt its ciphertext",
                k.arn, k.arn
            )));
        }
        match k.state {
            KeyState::Enabled | KeyState::PendingImport => {}
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion => {
                return Err(RotationError::Refused(format!(
                    "key {} is pending deletion: cancel the deletion (kms:CancelKeyDeletion) first",
                    k.arn
                )))
            }
            other => {
                return Err(RotationError::Refused(format!(
                    "key {} is {}: only Enabled keys (or PendingImport keys, for their first import) can be rotated",
                    k.arn,
                    other.as_str()
                )))
            }
        }
        if let Some((tag, value)) = &req.required_tag {
            if k.tags.get(tag) != Some(value) {
                return Err(RotationError::Refused(format!(
                    "key {} is not tagged {tag}={value}: this rotation only touches keys marked for it",
                    k.arn
                )));
            }
        }
        let quota_left = k.rotations.as_ref().map(|rs| {
            let used = rs.iter().filter(|r| r.rotation_type().map(|t| t.as_str()) == Some("ON_DEMAND")).count() as u32;
            ON_DEMAND_QUOTA.saturating_sub(used)
        });
        let progress = self.progress(req, &k).await?;
        if quota_left == Some(0)
            && matches!(progress, Progress::Fresh | Progress::Kept { .. })
            && req.strategy == Strategy::InPlace
        {
            return Err(RotationError::Refused(format!(
                "key {} has used all {ON_DEMAND_QUOTA} on-demand rotations: use --strategy alias-swap",
                k.arn
            )));
        }
        let alias = match req.strategy {
            Strategy::AliasSwap => Some(self.alias_for(req, &k).await?),
            Strategy::InPlace => None,
        };
        let algorithm = self.source.choose(req.wrapping_algorithm)?;
        let resume_object = Self::material_map(&k).pending_object().map(str::to_string);
        Ok(RotationPlan {
            key_arn: k.arn,
            key_id: k.id,
            alias,
            strategy: req.strategy,
            algorithm,
            wrapping_key_spec: req.wrapping_key_spec,
            source: self.source.name().to_string(),
            progress,
            quota_left,
            state: k.state.as_str().to_string(),
            keeps_material: self.source.keeps_material(),
            replicas: k.replicas.clone(),
            resume_object,
        })
    }

    pub(super) async fn progress(&self, req: &RotationRequest, k: &KeyView) -> Result<Progress, RotationError> {
        if req.strategy == Strategy::AliasSwap {
            if let Some(s) = k.tags.get(SUCCESSOR_TAG) {
                return Ok(Progress::SuccessorCreated { successor: s.clone() });
            }
            // Reached through the alias after it moved: a successor whose rotation is not
            // recorded yet (the pending tag goes only after the rotation tags are written).
            if let (Some(p), true) = (k.tags.get(PREDECESSOR_TAG), k.tags.contains_key(PENDING_TAG)) {
                return Ok(Progress::Swapped { predecessor: p.clone() });
            }
        }
        if k.state == KeyState::PendingImport {
            return Ok(Progress::FirstImport);
        }
        // The pending tag names the material once KMS took it (earlier versions: the id alone).
        if let Some((Some(m), _)) = k.tags.get(PENDING_TAG).map(|v| custody::parse_pending_tag(v)) {
            return Ok(if k.current_material.as_deref() == Some(m) {
                Progress::Rotated { material_id: m.to_string() }
            } else {
                Progress::Imported { material_id: m.to_string() }
            });
        }
        // Interrupted between ImportKeyMaterial and the pending tag: KMS lists the material,
        // as PENDING_ROTATION, or on a multi-Region primary as
        // PENDING_MULTI_REGION_IMPORT_AND_ROTATION until every replica has it
        // (RotationsListEntry). Either way it is this rotation's material: import nothing new.
        let pending = k.rotations.iter().flatten().find(|r| {
            matches!(
                r.key_material_state().map(|s| s.as_str()),
                Some("PENDING_ROTATION" | "PENDING_MULTI_REGION_IMPORT_AND_ROTATION")
            )
        });
        if let Some(id) = pending.and_then(|p| p.key_material_id()) {
            return Ok(Progress::Imported { material_id: id.to_string() });
        }
        // Stopped after the material was kept, before ImportKeyMaterial.
        if let Some(object) = Self::material_map(k).pending_object() {
            return Ok(Progress::Kept { object_id: object.to_string() });
        }
        Ok(Progress::Fresh)
    }

    /// The alias to move: the one named, else the key's only alias.
    pub(super) async fn alias_for(&self, req: &RotationRequest, k: &KeyView) -> Result<String, RotationError> {
        match KeyRef::parse(&req.key) {
            Ok(KeyRef::AliasName(a)) => return Ok(a),
            Ok(KeyRef::AliasArn(a)) => return Ok(a.resource),
            _ => {}
        }
        let out = self.kms().list_aliases().key_id(&k.id).send().await.map_err(aws_err("kms:ListAliases"))?;
        let names: Vec<&str> = out.aliases().iter().filter_map(|a| a.alias_name()).collect();
        match names[..] {
            [one] => Ok(one.to_string()),
            [] => Err(RotationError::Refused(format!("key {} has no alias to move: alias-swap needs one", k.arn))),
            _ => Err(RotationError::Refused(format!(
                "key {} has several aliases ({}): name the one to move",
                k.arn,
                names.join(", ")
            ))),
        }
    }
}

/// Refuses keys in the China Regions before anything is generated or asked of KMS. There,
/// symmetric key material is 16 bytes (SM4) and RSA_AES_KEY_WRAP_* is not offered (KMS
/// Developer Guide on amazonaws.cn, "Step 3: Encrypt the key material"); this tool makes
/// 32-byte AES-256 material, so an import would fail half-way, after the HSM generated it.
pub(super) fn refuse_china(key: &str, reference: &KeyRef, region: &str) -> Result<(), RotationError> {
    let partition = match reference {
        KeyRef::KeyArn(a) | KeyRef::AliasArn(a) => Some(a.partition.as_str()),
        _ => None,
    };
    let arn_region = match reference {
        KeyRef::KeyArn(a) | KeyRef::AliasArn(a) => Some(a.region.as_str()),
        _ => None,
    };
    if partition == Some("aws-cn") || arn_region.unwrap_or(region).starts_with("cn-") {
        return Err(RotationError::Refused(format!(
            "key {key} is in a China Region (partition aws-cn): KMS there takes 16-byte SM4 key material and \
             offers no RSA_AES_KEY_WRAP, and this tool generates 32-byte AES-256 material; nothing was generated \
             or imported. Import SM4 material with a tool built for the China Regions"
        )));
    }
    Ok(())
}

/// The PKCS#11 mechanisms a wrapping algorithm uses inside the HSM.
pub(super) fn mechanism(a: WrappingAlgorithm) -> &'static str {
    match a {
        WrappingAlgorithm::RsaesOaepSha256 => "CKM_AES_KEY_GEN, then CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256)",
        WrappingAlgorithm::RsaesOaepSha1 => "CKM_AES_KEY_GEN, then CKM_RSA_PKCS_OAEP (SHA-1, MGF1-SHA-1)",
        WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            "CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP_PAD under an ephemeral AES key, CKM_RSA_PKCS_OAEP (SHA-256) of that key"
        }
        WrappingAlgorithm::RsaAesKeyWrapSha1 => {
            "CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP_PAD under an ephemeral AES key, CKM_RSA_PKCS_OAEP (SHA-1) of that key"
        }
    }
}

/// Where a rotation stands, read from the key before doing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A key created without material: the first import, no rotation.
    FirstImport,
    /// Nothing in flight: a full rotation.
    Fresh,
    /// A stopped run kept new material as this HSM object and did not import it: import it.
    Kept { object_id: String },
    /// New material is imported (PENDING_ROTATION) but not yet current.
    Imported { material_id: String },
    /// The new material is current; verification and tags remain.
    Rotated { material_id: String },
    /// Alias-swap: the successor key exists (and may or may not have material).
    SuccessorCreated { successor: String },
    /// Alias-swap: the alias already points at this successor; verification and tags remain.
    Swapped { predecessor: String },
}

#[derive(Debug, Clone)]
pub struct RotationPlan {
    pub key_arn: String,
    pub key_id: String,
    pub alias: Option<String>,
    pub strategy: Strategy,
    pub algorithm: WrappingAlgorithm,
    pub wrapping_key_spec: WrappingKeySpec,
    pub source: String,
    pub progress: Progress,
    /// On-demand rotations left of 25; `None` when KMS cannot list them.
    pub quota_left: Option<u32>,
    pub state: String,
    /// Whether the new material stays in the HSM (custody).
    pub keeps_material: bool,
    /// Multi-Region primary: the replicas that get the same material before the rotation.
    pub replicas: Vec<Replica>,
    /// The HSM object a stopped run generated for this key (its pending tag names it): the
    /// rotation imports that one instead of generating another.
    pub resume_object: Option<String>,
}

impl fmt::Display for RotationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key:        {}", self.key_arn)?;
        if let Some(a) = &self.alias {
            writeln!(f, "alias:      {a}")?;
        }
        writeln!(f, "state:      {}", self.state)?;
        writeln!(f, "strategy:   {}", self.strategy)?;
        writeln!(f, "wrapping:   {} with {} ({})", self.algorithm, self.wrapping_key_spec, self.source)?;
        writeln!(f, "mechanism:  {}", mechanism(self.algorithm))?;
        writeln!(
            f,
            "custody:    {}",
            if self.keeps_material {
                "the new material stays in the HSM as a persistent token object (CKA_LABEL = key ARN, CKA_ID = its own id, named in KMS's KeyMaterialDescription)"
            } else {
                "NOT KEPT: this source forgets the material after the import (development only)"
            }
        )?;
        for r in &self.replicas {
            writeln!(f, "replica:    {} (same material, EXISTING_KEY_MATERIAL)", r.arn)?;
        }
        writeln!(f, "progress:   {:?}", self.progress)?;
        match self.quota_left {
            Some(n) => write!(f, "quota:      {n} of {ON_DEMAND_QUOTA} on-demand rotations left"),
            None => write!(f, "quota:      unknown (ListKeyRotations not available)"),
        }
    }
}
