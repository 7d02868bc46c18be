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
    pub(super) async fn record(
        &self,
        req: &RotationRequest,
        key: &str,
        material: Option<&str>,
    ) -> Result<(), RotationError> {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut tags = vec![(req.date_tag.as_str(), now.as_str())];
        if let Some(m) = material {
            tags.push((MATERIAL_TAG, m));
        }
        // Where the material lives, so an operator can find it without our own database.
        let held = self.held(key, material)?.map(|k| k.tag_value());
        if let Some(h) = &held {
            tags.push((HSM_OBJECT_TAG, h));
        }
        if let Some(c) = &req.change_id {
            tags.push((CHANGE_ID_TAG, c));
        }
        self.tag(key, &tags).await?;
        // Our own bookkeeping tag, not key material: removing it deletes nothing of value.
        self.kms()
            .untag_resource()
            .key_id(key)
            .tag_keys(PENDING_TAG)
            .send()
            .await
            .map_err(aws_err("kms:UntagResource"))?;
        self.step(req, Step::Record, &format!("tagged {key}: {}={now}", req.date_tag))
    }
}
