//! Custody: the source as the rotation sees it. Material for KMS is a persistent, sensitive
//! token object labelled with the key ARN and named by its KMS key material id, so that it
//! can be found and imported again; nothing here deletes one.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::objects::{ensure_sensitive, SessionObjects};
use super::token::pkcs11;
use super::{Pkcs11Source, WrapWithTrusted};
use crate::rotation::hsm::{
    label_matches, parse_kms_public_key, HsmError, KeptMaterial, KeyMaterialSource, WrappedKeyMaterial,
    WrappingAlgorithm, WrappingKeySpec, KEY_MATERIAL_LEN, PENDING_ID,
};

impl Pkcs11Source {
    /// Token objects holding kept material, with their label and id.
    fn kept_objects(&self, session: &Session) -> Result<Vec<(ObjectHandle, String, String)>, HsmError> {
        let handles = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::KeyType(KeyType::AES),
            ])
            .map_err(pkcs11("C_FindObjects (kept material)"))?;
        let mut out = Vec::new();
        for h in handles {
            let attrs = session
                .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                .map_err(pkcs11("C_GetAttributeValue (CKA_LABEL, CKA_ID)"))?;
            let (mut label, mut id) = (String::new(), String::new());
            for a in attrs {
                match a {
                    Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(i) => id = String::from_utf8_lossy(&i).into_owned(),
                    _ => {}
                }
            }
            if label.starts_with("arn:") {
                out.push((h, label, id));
            }
        }
        Ok(out)
    }

    fn kept(&self, key_arn: &str, id: &str) -> KeptMaterial {
        KeptMaterial {
            token: self.label.clone(),
            key_arn: key_arn.to_owned(),
            key_material_id: (id != PENDING_ID).then(|| id.to_owned()),
        }
    }
}

impl KeyMaterialSource for Pkcs11Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn supported_algorithms(&self) -> Result<Vec<WrappingAlgorithm>, HsmError> {
        if let Some(supported) = self.supported.get() {
            return Ok(supported.clone());
        }
        let supported = self.probe()?;
        Ok(self.supported.get_or_init(|| supported).clone())
    }

    fn generate_and_wrap(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<WrappedKeyMaterial, HsmError> {
        self.wrap_in_token(kms_public_key_der, spec, algorithm, false).map(|(wrapped, _)| wrapped)
    }

    fn keeps_material(&self) -> bool {
        true
    }

    fn keep_new_material(&self, key_arn: &str) -> Result<(KeptMaterial, bool), HsmError> {
        let trusted = self.wrap_with_trusted() == WrapWithTrusted::Used;
        let session = self.session();
        if self.kept_objects(&session)?.iter().any(|(_, label, id)| label == key_arn && id == PENDING_ID) {
            // A run stopped before KMS named it: this is the material to import, not a new one.
            return Ok((self.kept(key_arn, PENDING_ID), true));
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen((KEY_MATERIAL_LEN as u64).into()),
            // Custody: a persistent object, so the material can be imported again.
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            // Only so that it can leave the token wrapped for KMS.
            Attribute::Extractable(true),
            // CKA_ID is set to the KMS key material id after ImportKeyMaterial.
            Attribute::Modifiable(true),
            Attribute::Label(key_arn.as_bytes().to_vec()),
            Attribute::Id(PENDING_ID.as_bytes().to_vec()),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ];
        if trusted {
            template.push(Attribute::WrapWithTrusted(true));
        }
        let handle = session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(pkcs11("C_GenerateKey (kept AES-256 key material)"))?;
        ensure_sensitive(&session, handle, &self.label)?;
        tracing::info!(token = %self.label, key = key_arn, wrap_with_trusted = trusted, "generated key material as a token object");
        Ok((self.kept(key_arn, PENDING_ID), false))
    }

    fn wrap_kept(
        &self,
        kept: &KeptMaterial,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<WrappedKeyMaterial, HsmError> {
        let kms_key = parse_kms_public_key(kms_public_key_der, spec)?;
        let supported = self.supported_algorithms()?;
        if !supported.contains(&algorithm) {
            return Err(HsmError::AlgorithmUnsupported { source_name: self.name.clone(), algorithm, supported });
        }
        let trusted = self.wrap_with_trusted() == WrapWithTrusted::Used;
        let session = self.session();
        let id = kept.key_material_id.as_deref().unwrap_or(PENDING_ID);
        let handle = self
            .kept_objects(&session)?
            .into_iter()
            .find(|(_, label, i)| {
                i == id && (label == &kept.key_arn || (id != PENDING_ID && label_matches(label, &kept.key_arn)))
            })
            .map(|(h, _, _)| h)
            .ok_or_else(|| HsmError::NotKept { key_arn: kept.key_arn.clone(), key_material_id: id.to_owned() })?;
        ensure_sensitive(&session, handle, &self.label)?;
        let mut objects = SessionObjects::new(&session);
        let bytes = self.wrap_handle(&session, &mut objects, handle, &kms_key, algorithm, trusted)?;
        tracing::info!(token = %self.label, algorithm = algorithm.as_str(), wrapped_len = bytes.len(), "wrapped kept key material in the HSM");
        Ok(WrappedKeyMaterial::new(algorithm, bytes))
    }

    fn name_kept(&self, key_arn: &str, key_material_id: &str) -> Result<KeptMaterial, HsmError> {
        let session = self.session();
        let objects = self.kept_objects(&session)?;
        if objects.iter().any(|(_, label, id)| id == key_material_id && label_matches(label, key_arn)) {
            return Ok(self.kept(key_arn, key_material_id));
        }
        let (handle, _, _) = objects
            .into_iter()
            .find(|(_, label, id)| label == key_arn && id == PENDING_ID)
            .ok_or_else(|| HsmError::PendingNotKept { key_arn: key_arn.to_owned() })?;
        session
            .update_attributes(handle, &[Attribute::Id(key_material_id.as_bytes().to_vec())])
            .map_err(pkcs11("C_SetAttributeValue (CKA_ID)"))?;
        tracing::info!(token = %self.label, key = key_arn, material = key_material_id, "named the kept key material");
        Ok(self.kept(key_arn, key_material_id))
    }

    fn destroy_kept(&self, key_arn: &str) -> Result<Vec<KeptMaterial>, HsmError> {
        let session = self.session();
        let mut destroyed = Vec::new();
        // The exact label only: related multi-Region keys share a key id, not a retirement.
        for (handle, label, id) in self.kept_objects(&session)?.into_iter().filter(|(_, l, _)| l == key_arn) {
            session.destroy_object(handle).map_err(pkcs11("C_DestroyObject (retired key material)"))?;
            tracing::info!(target: "audit", token = %self.label, key = %label, material = %id, "destroyed the kept key material of a deleted KMS key");
            destroyed.push(self.kept(&label, &id));
        }
        Ok(destroyed)
    }

    fn kept_materials(&self, key_arn: &str) -> Result<Vec<KeptMaterial>, HsmError> {
        let session = self.session();
        Ok(self
            .kept_objects(&session)?
            .into_iter()
            .filter(|(_, label, _)| label_matches(label, key_arn))
            .map(|(_, label, id)| KeptMaterial {
                token: self.label.clone(),
                key_arn: label,
                key_material_id: (id != PENDING_ID).then_some(id),
            })
            .collect())
    }
}
