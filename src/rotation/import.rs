//! GetParametersForImport, wrap in the HSM, ImportKeyMaterial.
//!
//! Order of writes, so that no run leaves KMS as the only holder or the HSM with an orphan, and
//! nothing on the token is ever changed after it is created (see `custody`):
//! 1. the pending tag `hsm-object:<id>` on the key, with a fresh object id;
//! 2. the material is generated as a token object with that `CKA_ID` and `CKA_LABEL` = key ARN
//!    (a run stopped after 1 or 2 resumes with that very id: never another run's object);
//! 3. ImportKeyMaterial with `KeyMaterialDescription = "kms-rotation-guard hsm-object:<id>"`,
//!    then the pending tag `<material id> hsm-object:<id>`.

use super::*;
use crate::rotation::custody;
use crate::rotation::hsm::{KeptMaterial, WrappedKeyMaterial};

/// The wrapping public key and import token of one GetParametersForImport.
pub(super) struct ImportParameters {
    pub public_key: Blob,
    pub token: Blob,
    pub valid_to: Option<DateTime<Utc>>,
}

impl ImportParameters {
    /// Refuses parameters that expire before the import could use them.
    pub fn check_fresh(&self, what: &str) -> Result<(), RotationError> {
        if self.valid_to.is_some_and(|v| v < Utc::now() + TOKEN_MARGIN) {
            return Err(RotationError::Refused(format!(
                "the import token expires within 10 minutes {what}: run again"
            )));
        }
        Ok(())
    }
}

/// How ImportKeyMaterial is called.
pub(super) struct ImportCall<'a> {
    /// `None` for the first material of a key.
    pub import_type: Option<ImportType>,
    /// With `EXISTING_KEY_MATERIAL`: which material this is.
    pub key_material_id: Option<&'a str>,
    pub valid_to: Option<DateTime<Utc>>,
    /// The HSM object that holds the material: named in KeyMaterialDescription on every
    /// import (KMS keeps a description only per key, so replicas need it too).
    pub object_id: Option<&'a str>,
}

impl Rotator<'_> {
    pub(super) async fn import_parameters(
        &self,
        kms: &aws_sdk_kms::Client,
        key: &str,
        algorithm: WrappingAlgorithm,
        spec: WrappingKeySpec,
    ) -> Result<ImportParameters, RotationError> {
        let params = kms
            .get_parameters_for_import()
            .key_id(key)
            .wrapping_algorithm(AlgorithmSpec::from(algorithm.as_str()))
            .wrapping_key_spec(SdkSpec::from(spec.as_str()))
            .send()
            .await
            .map_err(aws_err("kms:GetParametersForImport"))?;
        let p =
            ImportParameters {
                public_key: params.public_key().cloned().ok_or_else(|| {
                    RotationError::Verification("GetParametersForImport returned no public key".into())
                })?,
                token: params.import_token().cloned().ok_or_else(|| {
                    RotationError::Verification("GetParametersForImport returned no import token".into())
                })?,
                valid_to: params.parameters_valid_to().and_then(to_chrono),
            };
        p.check_fresh("already")?;
        Ok(p)
    }

    pub(super) async fn send_import(
        &self,
        kms: &aws_sdk_kms::Client,
        key: &str,
        params: &ImportParameters,
        wrapped: WrappedKeyMaterial,
        call: ImportCall<'_>,
    ) -> Result<Option<String>, RotationError> {
        params.check_fresh("after the HSM worked")?;
        let mut import = kms
            .import_key_material()
            .key_id(key)
            .import_token(params.token.clone())
            .encrypted_key_material(Blob::new(wrapped.into_bytes()))
            .set_import_type(call.import_type)
            .set_key_material_id(call.key_material_id.map(str::to_string));
        import = match call.object_id {
            Some(object) => import.key_material_description(custody::description(object)),
            // Material no HSM keeps (the development source): dated, and linked to nothing.
            None if call.key_material_id.is_none() => import
                .key_material_description(format!("kms-rotation-guard {}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ"))),
            None => import,
        };
        import = match call.valid_to {
            None => import.expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire),
            Some(t) => import
                .expiration_model(ExpirationModelType::KeyMaterialExpires)
                .valid_to(aws_smithy_types::DateTime::from_millis(t.timestamp_millis())),
        };
        let out = import.send().await.map_err(aws_err("kms:ImportKeyMaterial"))?;
        let returned = out.key_material_id().map(str::to_string);
        // KMS computes the id from the material it unwrapped: a different one means the object
        // does not hold the material it was taken for.
        if let (Some(asked), Some(got)) = (call.key_material_id, returned.as_deref()) {
            if asked != got {
                return Err(RotationError::Verification(format!(
                    "KMS imported key material {got} where {asked} was meant: the HSM object wrapped does not hold \
                     {asked}"
                )));
            }
        }
        Ok(returned)
    }

    /// Wraps the material for `params`: kept material inside the HSM, or (software source)
    /// throwaway material.
    pub(super) fn wrap(
        &self,
        kept: Option<&KeptMaterial>,
        params: &ImportParameters,
        algorithm: WrappingAlgorithm,
        spec: WrappingKeySpec,
    ) -> Result<WrappedKeyMaterial, RotationError> {
        Ok(match kept {
            Some(k) => self.source.wrap_kept(k, params.public_key.as_ref(), spec, algorithm)?,
            None => self.source.generate_and_wrap(params.public_key.as_ref(), spec, algorithm)?,
        })
    }

    /// Keep (a new object, or the one a stopped run generated: `resume`), GetParametersForImport,
    /// wrap, ImportKeyMaterial. Returns the new material's id when KMS reports it, and the
    /// object that holds it.
    pub(super) async fn import(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
        key_arn: &str,
        new_material: bool,
        resume: Option<&str>,
    ) -> Result<(Option<String>, Option<KeptMaterial>), RotationError> {
        let kept = if self.source.keeps_material() {
            let object_id = match resume {
                Some(o) => o.to_string(),
                None => {
                    let o = custody::new_object_id();
                    // Recorded before the object exists: a run stopped from here on resumes
                    // with this very object, never one another run made.
                    self.tag(key_arn, &[(PENDING_TAG, &custody::pending_tag_value(None, &o))]).await?;
                    o
                }
            };
            let (kept, reused) = self.source.keep_new_material(key_arn, &object_id)?;
            self.step(
                req,
                Step::KeepMaterial,
                &if reused {
                    format!("reusing the key material an interrupted run kept: {kept}")
                } else {
                    format!("generated 32 bytes of key material as a persistent token object: {kept}")
                },
            )?;
            Some(kept)
        } else {
            None
        };
        let kms = self.kms();
        let params = self.import_parameters(kms, key_arn, plan.algorithm, plan.wrapping_key_spec).await?;
        self.step(
            req,
            Step::GetParametersForImport,
            &format!("got a {} wrapping key and import token", plan.wrapping_key_spec),
        )?;

        let wrapped = self.wrap(kept.as_ref(), &params, plan.algorithm, plan.wrapping_key_spec)?;
        self.step(
            req,
            Step::GenerateAndWrap,
            &format!(
                "{} 32 bytes of key material in {} and wrapped them with {}",
                if kept.is_some() { "kept" } else { "generated" },
                self.source.name(),
                plan.algorithm
            ),
        )?;
        // The first material of a key is imported without ImportType (EXISTING_KEY_MATERIAL).
        let call = ImportCall {
            import_type: new_material.then_some(ImportType::NewKeyMaterial),
            key_material_id: None,
            valid_to: req.valid_to,
            object_id: kept.as_ref().map(|k| k.object_id.as_str()),
        };
        let mut id = self.send_import(kms, key_arn, &params, wrapped, call).await?;
        if !new_material && id.is_none() {
            // The first material becomes current at once.
            id = self.current_material(key_arn).await?;
        }
        // Written before anything else, so a re-run knows this import happened and which
        // object holds it. (AWS also lists the material as pending, with its description,
        // which covers a stop right before this.)
        if let Some(m) = &id {
            let value = match &kept {
                Some(k) => custody::pending_tag_value(Some(m), &k.object_id),
                None => m.clone(),
            };
            self.tag(key_arn, &[(PENDING_TAG, &value)]).await?;
        }
        self.step(
            req,
            Step::ImportKeyMaterial,
            &format!("imported new key material {}", id.as_deref().unwrap_or("(id not reported)")),
        )?;
        let kept = kept.map(|k| KeptMaterial { key_material_id: id.clone(), ..k });
        Ok((id, kept))
    }

    /// The token object holding `material` of `key_arn`, if this source keeps material. KMS
    /// names it, so a material kept in an object this login cannot see is an error that
    /// says so, never "not kept".
    pub(super) async fn held(
        &self,
        key_arn: &str,
        material: Option<&str>,
    ) -> Result<Option<KeptMaterial>, RotationError> {
        match material {
            Some(m) if self.source.keeps_material() => match self.custody_of(key_arn, m).await? {
                custody::Custody::Held(k) => Ok(Some(k)),
                custody::Custody::NotHeld => Ok(None),
                other => Err(other.require(key_arn, m).expect_err("not held").into()),
            },
            _ => Ok(None),
        }
    }
}
