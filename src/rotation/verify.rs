//! Verification: the new material is current, a probe round-trips, and old ciphertext decrypts.
//!
//! It writes nothing: a failed check leaves the key as it is, with no rotation recorded.

use super::*;

impl Rotator<'_> {
    pub(super) async fn current_material(&self, key: &str) -> Result<Option<String>, RotationError> {
        let out = self.kms().describe_key().key_id(key).send().await.map_err(aws_err("kms:DescribeKey"))?;
        Ok(out.key_metadata().and_then(|m| m.current_key_material_id()).map(str::to_string))
    }

    pub(super) async fn encrypt_probe(&self, key: &str) -> Result<(Vec<u8>, Blob), RotationError> {
        // A random probe, not key material: it only proves old ciphertext stays readable.
        let probe: Vec<u8> = format!("kms-rotation-guard probe {}", uuid_like()).into_bytes();
        let out = self
            .kms()
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(probe.clone()))
            .encryption_context(PROBE_CONTEXT.0, PROBE_CONTEXT.1)
            .send()
            .await
            .map_err(aws_err("kms:Encrypt"))?;
        let blob = out
            .ciphertext_blob()
            .cloned()
            .ok_or_else(|| RotationError::Verification("Encrypt returned no ciphertext".into()))?;
        Ok((probe, blob))
    }

    pub(super) async fn decrypts(&self, key: &str, probe: &[u8], ciphertext: &Blob) -> Result<(), RotationError> {
        let out = self
            .kms()
            .decrypt()
            .key_id(key)
            .ciphertext_blob(ciphertext.clone())
            .encryption_context(PROBE_CONTEXT.0, PROBE_CONTEXT.1)
            .send()
            .await
            .map_err(|e| RotationError::Verification(format!("Decrypt failed: {}", classify(&e).message)))?;
        if out.plaintext().map(|p| p.as_ref()) != Some(probe) {
            return Err(RotationError::Verification("Decrypt returned different plaintext".into()));
        }
        Ok(())
    }

    /// Encrypt/Decrypt round trip with the new material; the old ciphertext still decrypts;
    /// the new material is current. Returns the current material id.
    pub(super) async fn verify(
        &self,
        req: &RotationRequest,
        key: &str,
        material: Option<&str>,
        before: Option<&(Vec<u8>, Blob)>,
    ) -> Result<Option<String>, RotationError> {
        // RotateKeyOnDemand may take a moment to make the new material current.
        let mut current = self.current_material(key).await?;
        for _ in 0..30 {
            if material.is_none() || current.as_deref() == material {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            current = self.current_material(key).await?;
        }
        if let (Some(want), Some(got)) = (material, current.as_deref()) {
            if want != got {
                return Err(RotationError::Verification(format!("current key material is {got}, expected {want}")));
            }
        }
        let (probe, ciphertext) = self.encrypt_probe(key).await?;
        self.decrypts(key, &probe, &ciphertext).await?;
        if let Some((old_probe, old_ciphertext)) = before {
            self.decrypts(key, old_probe, old_ciphertext).await?;
        }
        self.step(
            req,
            Step::Verify,
            "verified: encrypt/decrypt round trip, pre-rotation ciphertext decrypts, new material current",
        )?;
        Ok(current.or(material.map(str::to_string)))
    }
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{:016x}", h.finish())
}
