//! GetParametersForImport, wrap in the HSM, ImportKeyMaterial.

use super::*;

impl Rotator<'_> {
    /// GetParametersForImport, generate and wrap in the HSM, ImportKeyMaterial. Returns the
    /// new material's id when KMS reports it.
    pub(super) async fn import(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
        key: &str,
        new_material: bool,
    ) -> Result<Option<String>, RotationError> {
        let params = self
            .kms()
            .get_parameters_for_import()
            .key_id(key)
            .wrapping_algorithm(AlgorithmSpec::from(plan.algorithm.as_str()))
            .wrapping_key_spec(SdkSpec::from(plan.wrapping_key_spec.as_str()))
            .send()
            .await
            .map_err(aws_err("kms:GetParametersForImport"))?;
        let valid_to = params.parameters_valid_to().and_then(to_chrono);
        if valid_to.is_some_and(|v| v < Utc::now() + TOKEN_MARGIN) {
            return Err(RotationError::Refused(
                "the import token expires within 10 minutes: run again for fresh parameters".into(),
            ));
        }
        let public_key = params
            .public_key()
            .ok_or_else(|| RotationError::Verification("GetParametersForImport returned no public key".into()))?;
        let token = params
            .import_token()
            .ok_or_else(|| RotationError::Verification("GetParametersForImport returned no import token".into()))?;
        self.step(
            req,
            Step::GetParametersForImport,
            &format!("got a {} wrapping key and import token", plan.wrapping_key_spec),
        )?;

        let wrapped = self.source.generate_and_wrap(public_key.as_ref(), plan.wrapping_key_spec, plan.algorithm)?;
        self.step(
            req,
            Step::GenerateAndWrap,
            &format!(
                "generated 32 bytes of key material in {} and wrapped them with {}",
                self.source.name(),
                plan.algorithm
            ),
        )?;
        if valid_to.is_some_and(|v| v < Utc::now() + TOKEN_MARGIN) {
            return Err(RotationError::Refused("the import token expired while the HSM worked: run again".into()));
        }
        let mut import = self
            .kms()
            .import_key_material()
            .key_id(key)
            .import_token(token.clone())
            .encrypted_key_material(Blob::new(wrapped.into_bytes()))
            .key_material_description(format!("kms-rotation-guard {}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ")));
        // The first material of a key is imported without ImportType (EXISTING_KEY_MATERIAL).
        if new_material {
            import = import.import_type(ImportType::NewKeyMaterial);
        }
        import = match req.valid_to {
            None => import.expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire),
            Some(t) => import
                .expiration_model(ExpirationModelType::KeyMaterialExpires)
                .valid_to(aws_smithy_types::DateTime::from_millis(t.timestamp_millis())),
        };
        let out = import.send().await.map_err(aws_err("kms:ImportKeyMaterial"))?;
        let mut id = out.key_material_id().map(str::to_string);
        if !new_material && id.is_none() {
            // The first material becomes current at once.
            id = self.current_material(key).await?;
        }
        // Written before anything else, so a re-run knows this import happened. (AWS also
        // lists the material as PENDING_ROTATION, which covers a stop right before this.)
        if let Some(m) = &id {
            self.tag(key, &[(PENDING_TAG, m)]).await?;
        }
        self.step(
            req,
            Step::ImportKeyMaterial,
            &format!("imported new key material {}", id.as_deref().unwrap_or("(id not reported)")),
        )?;
        Ok(id)
    }
}
