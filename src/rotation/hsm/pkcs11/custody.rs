//! Custody: the source as the rotation sees it. Material for KMS is a persistent, sensitive
//! token object labelled with the key ARN and named with an id of its own when it is created,
//! so that it can be found and imported again; nothing here changes or deletes one.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::objects::{ensure_sensitive, SessionObjects};
use super::token::pkcs11;
use super::{Pkcs11Source, WrapWithTrusted};
use cryptoki::error::{Error as CkError, RvError};

use crate::rotation::hsm::{
    is_kms_material_id, label_matches, parse_kms_public_key, HsmError, KeptMaterial, KeyMaterialSource,
    WrappedKeyMaterial, WrappingAlgorithm, WrappingKeySpec, KEY_MATERIAL_LEN,
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
            object_id: id.to_owned(),
            // Objects of earlier versions were renamed to the KMS material id.
            key_material_id: is_kms_material_id(id).then(|| id.to_owned()),
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

    fn keep_new_material(&self, key_arn: &str, object_id: &str) -> Result<(KeptMaterial, bool), HsmError> {
        let trusted = self.wrap_with_trusted() == WrapWithTrusted::Used;
        let (kept, reused) = self.with_live(|session| {
            if self.kept_objects(session)?.iter().any(|(_, label, id)| label == key_arn && id == object_id) {
                // A run stopped before ImportKeyMaterial: this is the material to import.
                return Ok((self.kept(key_arn, object_id), true));
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
                // Named here, once: nothing is set on the object after it exists (AWS CloudHSM
                // does not let CKA_ID change). KMS links its material id to this id.
                Attribute::Label(key_arn.as_bytes().to_vec()),
                Attribute::Id(object_id.as_bytes().to_vec()),
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
            let handle =
                self.generate_kept(session, &template).map_err(pkcs11("C_GenerateKey (kept AES-256 key material)"))?;
            ensure_sensitive(session, handle, &self.label)?;
            Ok((self.kept(key_arn, object_id), false))
        })?;
        if !reused {
            tracing::info!(token = %self.label, key = key_arn, object = object_id, wrap_with_trusted = trusted, "generated key material as a token object");
        }
        Ok((kept, reused))
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
        let not_visible = |reason: String| HsmError::NotVisible {
            key_arn: kept.key_arn.clone(),
            key_material_id: kept.key_material_id.clone().unwrap_or_else(|| "(unnamed)".into()),
            object_id: kept.object_id.clone(),
            reason,
        };
        let bytes = self.with_live(|session| {
            let handle = self
                .kept_objects(session)?
                .into_iter()
                .find(|(_, label, id)| id == &kept.object_id && label_matches(label, &kept.key_arn))
                .map(|(h, _, _)| h)
                .ok_or_else(|| not_visible("this login does not see the object".into()))?;
            ensure_sensitive(session, handle, &self.label)?;
            let mut objects = SessionObjects::new(session);
            self.wrap_handle(session, &mut objects, handle, &kms_key, algorithm, trusted).map_err(|e| match e {
                HsmError::Pkcs11 { source: CkError::Pkcs11(rv, _), operation } if refused_to_this_user(rv) => {
                    not_visible(format!("the token refused {operation} ({rv:?}) to this user"))
                }
                other => other,
            })
        })?;
        tracing::info!(token = %self.label, algorithm = algorithm.as_str(), wrapped_len = bytes.len(), object = %kept.object_id, "wrapped kept key material in the HSM");
        Ok(WrappedKeyMaterial::new(algorithm, bytes))
    }

    fn destroy_kept(&self, key_arn: &str) -> Result<Vec<KeptMaterial>, HsmError> {
        self.with_live(|session| {
            let mut destroyed = Vec::new();
            // The exact label only: related multi-Region keys share a key id, not a retirement.
            for (handle, label, id) in self.kept_objects(session)?.into_iter().filter(|(_, l, _)| l == key_arn) {
                session.destroy_object(handle).map_err(pkcs11("C_DestroyObject (retired key material)"))?;
                tracing::info!(target: "audit", token = %self.label, key = %label, object = %id, "destroyed the kept key material of a deleted KMS key");
                destroyed.push(self.kept(&label, &id));
            }
            Ok(destroyed)
        })
    }

    fn kept_materials(&self, key_arn: &str) -> Result<Vec<KeptMaterial>, HsmError> {
        self.with_live(|session| {
            Ok(self
                .kept_objects(session)?
                .into_iter()
                .filter(|(_, label, _)| label_matches(label, key_arn))
                .map(|(_, label, id)| self.kept(&label, &id))
                .collect())
        })
    }
}

impl Pkcs11Source {
    /// C_GenerateKey of a kept object, CKA_MODIFIABLE=false where the token takes it (see the
    /// field `immutable_kept_objects`).
    fn generate_kept(&self, session: &Session, template: &[Attribute]) -> Result<ObjectHandle, CkError> {
        if self.immutable_kept_objects.get() == Some(&false) {
            return session.generate_key(&Mechanism::AesKeyGen, template);
        }
        let mut strict = template.to_vec();
        strict.push(Attribute::Modifiable(false));
        match session.generate_key(&Mechanism::AesKeyGen, &strict) {
            Err(CkError::Pkcs11(
                RvError::AttributeValueInvalid
                | RvError::AttributeTypeInvalid
                | RvError::AttributeReadOnly
                | RvError::TemplateInconsistent,
                _,
            )) if self.immutable_kept_objects.get().is_none() => {
                tracing::info!(token = %self.label, "the token takes CKA_MODIFIABLE only at its default: kept objects are not marked unmodifiable");
                let _ = self.immutable_kept_objects.set(false);
                session.generate_key(&Mechanism::AesKeyGen, template)
            }
            other => {
                if other.is_ok() {
                    let _ = self.immutable_kept_objects.set(true);
                }
                other
            }
        }
    }
}

/// Whether the token refused to wrap a kept object for this user: on AWS CloudHSM only the
/// crypto user who owns a key can wrap it (users it is shared with can use it, not wrap it),
/// and a handle of an object another user owns is not valid for this one.
pub(in crate::rotation::hsm) fn refused_to_this_user(rv: RvError) -> bool {
    matches!(rv, RvError::KeyFunctionNotPermitted | RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid)
}
