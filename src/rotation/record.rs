//! Record: the rotation tags (only after verification) and the audit line.

use super::*;

impl Rotator<'_> {
    pub(super) async fn tag(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), RotationError> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().expect("key and value set"))
            .collect();
        self.kms().tag_resource().key_id(key).set_tags(Some(tags)).send().await.map_err(aws_err("kms:TagResource"))?;
        Ok(())
    }

    /// Writes the rotation tags (only ever after verification), then drops the pending tag.
    ///
    /// Multi-Region: KMS does not synchronise tags between related keys (ReplicateKey: "Tags
    /// are not a shared property of multi-Region keys"), and the rule evaluators in each
    /// replica's Region read that replica's tags. So every replica gets the same record, in its
    /// own Region, before the primary: the primary's pending tag goes last, so a run stopped
    /// anywhere in here resumes (Progress::Rotated) instead of rotating again.
    pub(super) async fn record(
        &self,
        req: &RotationRequest,
        key: &str,
        material: Option<&str>,
        kept: Option<&hsm::KeptMaterial>,
        replicas: &[Replica],
    ) -> Result<(), RotationError> {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut tags = vec![(req.date_tag.as_str(), now.as_str())];
        if let Some(m) = material {
            tags.push((MATERIAL_TAG, m));
        }
        // Where the material lives, so an operator can find it without our own database. The
        // tag names the material too: where KMS lists no descriptions (custody's fallback),
        // this link must not rest on the rotation tag, which people edit.
        let held = kept.map(|k| match material {
            Some(m) => custody::hsm_tag_value(k, m),
            None => k.tag_value(),
        });
        if let Some(h) = &held {
            tags.push((HSM_OBJECT_TAG, h));
        }
        if let Some(c) = &req.change_id {
            tags.push((CHANGE_ID_TAG, c));
        }
        for r in replicas {
            let kms = self.aws.kms_in_region(&r.region);
            let written: Vec<Tag> = tags
                .iter()
                .map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().expect("key and value set"))
                .collect();
            kms.tag_resource()
                .key_id(&r.arn)
                .set_tags(Some(written))
                .send()
                .await
                .map_err(aws_err("kms:TagResource"))?;
            // Our own bookkeeping tag, not key material: removing it deletes nothing of value.
            kms.untag_resource()
                .key_id(&r.arn)
                .tag_keys(PENDING_TAG)
                .send()
                .await
                .map_err(aws_err("kms:UntagResource"))?;
        }
        self.tag(key, &tags).await?;
        self.kms()
            .untag_resource()
            .key_id(key)
            .tag_keys(PENDING_TAG)
            .send()
            .await
            .map_err(aws_err("kms:UntagResource"))?;
        let also = if replicas.is_empty() {
            String::new()
        } else {
            format!(
                " and its replicas in {}",
                replicas.iter().map(|r| r.region.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        self.step(req, Step::Record, &format!("tagged {key}{also}: {}={now}", req.date_tag))
    }
}

/// What a completed rotation did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    pub key_arn: String,
    /// The key now behind the alias (differs from `key_arn` after alias-swap).
    pub current_key_arn: String,
    pub strategy: String,
    pub wrapping_algorithm: String,
    pub key_material_id: Option<String>,
    /// The HSM object that holds the material (`None`: the source keeps none).
    pub hsm_object: Option<String>,
    /// Multi-Region: the replicas that received the same material.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    pub rotated_at: DateTime<Utc>,
    pub quota_left: Option<u32>,
    pub resumed: bool,
    pub duration_ms: u128,
    /// The change ticket of the campaign that ran this rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
}
