//! Alias-swap strategy: a new EXTERNAL key with the same policy and tags; the alias moves.
//!
//! It never deletes the old key: it stays Enabled, so old ciphertext decrypts.

use super::*;

impl Rotator<'_> {
    pub(super) async fn alias_swap(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
    ) -> Result<(String, Option<String>, Option<hsm::KeptMaterial>), RotationError> {
        let alias = plan.alias.as_deref().expect("alias-swap plans name an alias");
        if let Progress::Swapped { predecessor } = &plan.progress {
            // The old key must still decrypt what it encrypted; it was never disabled.
            let (probe, ciphertext) = self.encrypt_probe(predecessor).await?;
            self.decrypts(predecessor, &probe, &ciphertext).await?;
            if self.alias_target(alias).await?.as_deref() != Some(plan.key_id.as_str()) {
                return Err(RotationError::Verification(format!("{alias} does not point at {}", plan.key_id)));
            }
            let material = self.verify(req, alias, None, None).await?;
            let kept = self.held(&plan.key_arn, material.as_deref()).await?;
            self.record(req, &plan.key_arn, material.as_deref(), kept.as_ref(), &[]).await?;
            return Ok((plan.key_arn.clone(), material, kept));
        }
        let old = plan.key_id.as_str();
        let before = self.encrypt_probe(old).await?;
        let successor = match &plan.progress {
            Progress::SuccessorCreated { successor } => successor.clone(),
            _ => {
                let id = self.create_successor(plan, &req.date_tag).await?;
                self.step(req, Step::CreateSuccessor, &format!("created successor key {id} for {alias}"))?;
                id
            }
        };
        let s = self.read(&successor).await?;
        let (material, kept) = if s.state == KeyState::PendingImport {
            let resume = Self::material_map(&s).pending_object().map(str::to_string);
            self.import(req, plan, &s.arn, false, resume.as_deref()).await?
        } else {
            (s.current_material.clone(), None)
        };
        let target = self.alias_target(alias).await?;
        if target.as_deref() != Some(s.id.as_str()) {
            // Verify the successor works before any workload is pointed at it.
            let (probe, ciphertext) = self.encrypt_probe(&successor).await?;
            self.decrypts(&successor, &probe, &ciphertext).await?;
            self.kms()
                .update_alias()
                .alias_name(alias)
                .target_key_id(&s.id)
                .send()
                .await
                .map_err(aws_err("kms:UpdateAlias"))?;
            self.step(req, Step::Rotate, &format!("moved {alias} from {old} to {}", s.id))?;
        }
        if self.alias_target(alias).await?.as_deref() != Some(s.id.as_str()) {
            return Err(RotationError::Verification(format!("{alias} does not point at {}", s.id)));
        }
        // Ciphertext of the old key names the old key, which stays Enabled: it still decrypts.
        self.decrypts(old, &before.0, &before.1).await?;
        let material = self.verify(req, alias, None, None).await?.or(material);
        let kept = match kept {
            Some(k) if k.key_material_id == material => Some(k),
            _ => self.held(&s.arn, material.as_deref()).await?,
        };
        self.record(req, &s.arn, material.as_deref(), kept.as_ref(), &[]).await?;
        Ok((s.arn, material, kept))
    }

    pub(super) async fn alias_target(&self, alias: &str) -> Result<Option<String>, RotationError> {
        match self.kms().describe_key().key_id(alias).send().await {
            Ok(o) => Ok(o.key_metadata().map(|m| m.key_id().to_string())),
            Err(e) if classify(&e).kind == FailureKind::NotFound => Ok(None),
            Err(e) => Err(aws_err("kms:DescribeKey")(e)),
        }
    }

    /// A new EXTERNAL key with the old key's policy, description and tags. The old key is
    /// tagged with the successor's id at once, so a re-run never creates a second one.
    pub(super) async fn create_successor(
        &self,
        plan: &RotationPlan,
        req_date_tag: &str,
    ) -> Result<String, RotationError> {
        let old = self.kms().describe_key().key_id(&plan.key_id).send().await.map_err(aws_err("kms:DescribeKey"))?;
        let description = old.key_metadata().and_then(|m| m.description()).unwrap_or_default().to_string();
        let policy = self
            .kms()
            .get_key_policy()
            .key_id(&plan.key_id)
            .policy_name("default")
            .send()
            .await
            .map_err(aws_err("kms:GetKeyPolicy"))?
            .policy()
            .map(str::to_string);
        let k = self.read(&plan.key_id).await?;
        let mut req = self.kms().create_key().origin(OriginType::External).description(description).set_policy(policy);
        for (key, value) in k.tags.iter().filter(|(t, _)| {
            ![PENDING_TAG, SUCCESSOR_TAG, PREDECESSOR_TAG, DATE_TAG, MATERIAL_TAG].contains(&t.as_str())
                && t.as_str() != req_date_tag
        }) {
            req = req.tags(Tag::builder().tag_key(key).tag_value(value).build().expect("key and value set"));
        }
        req = req
            .tags(Tag::builder().tag_key(PREDECESSOR_TAG).tag_value(&plan.key_arn).build().expect("key and value set"));
        let out = req.send().await.map_err(aws_err("kms:CreateKey"))?;
        let id = out
            .key_metadata()
            .map(|m| m.key_id().to_string())
            .ok_or_else(|| RotationError::Verification("CreateKey returned no key".into()))?;
        self.tag(&plan.key_id, &[(SUCCESSOR_TAG, &id)]).await?;
        Ok(id)
    }
}
