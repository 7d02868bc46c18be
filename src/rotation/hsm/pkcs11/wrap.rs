//! Wrapping inside the token: the material never leaves it in clear. The KMS public key is
//! imported as a session object for each wrap; `RSA_AES_KEY_WRAP_*` is composed from two
//! wraps in the token. The probe finds out which algorithms the token really performs.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rsa::traits::PublicKeyParts;

use super::objects::{
    ensure_sensitive, generate_ephemeral_kek, generate_material, kwp_mismatch, oaep_mechanism, SessionObjects,
    KWP_WRAPPED_LEN,
};
use super::token::pkcs11;
use super::Pkcs11Source;
use crate::rotation::hsm::{
    parse_kms_public_key, HsmError, KeyMaterialSource, OaepHash, WrappedKeyMaterial, WrappingAlgorithm,
    WrappingKeySpec, CHECK_BLOCK,
};

/// Size of the throwaway RSA key used only to probe OAEP support.
const PROBE_RSA_BITS: u64 = 2048;

impl Pkcs11Source {
    pub(super) fn wrap_in_token(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
        with_check_value: bool,
    ) -> Result<(WrappedKeyMaterial, Option<[u8; 16]>), HsmError> {
        let kms_key = parse_kms_public_key(kms_public_key_der, spec)?;
        let supported = self.supported_algorithms()?;
        if !supported.contains(&algorithm) {
            return Err(HsmError::AlgorithmUnsupported { source_name: self.name.clone(), algorithm, supported });
        }

        let (bytes, check_value) = self.with_live(|session| {
            let mut objects = SessionObjects::new(session);
            let material = objects.track(generate_material(session, with_check_value)?);
            ensure_sensitive(session, material, &self.label)?;
            let bytes = self.wrap_handle(session, &mut objects, material, &kms_key, algorithm, false)?;
            let check_value = if with_check_value {
                let block = session
                    .encrypt(&Mechanism::AesEcb, material, &CHECK_BLOCK)
                    .map_err(pkcs11("C_Encrypt (key check value)"))?;
                Some(block.try_into().map_err(|b: Vec<u8>| HsmError::Software {
                    operation: "key check value",
                    reason: format!("the token returned {} bytes for one AES block", b.len()),
                })?)
            } else {
                None
            };
            Ok((bytes, check_value))
        })?;
        tracing::info!(token = %self.label, algorithm = algorithm.as_str(), wrapped_len = bytes.len(), "generated and wrapped key material in the HSM");
        Ok((WrappedKeyMaterial::new(algorithm, bytes), check_value))
    }

    /// Wraps `material` (a key on the token) to the KMS public key with `algorithm`.
    pub(super) fn wrap_handle(
        &self,
        session: &Session,
        objects: &mut SessionObjects<'_>,
        material: ObjectHandle,
        kms_key: &rsa::PublicKey,
        algorithm: WrappingAlgorithm,
        trusted: bool,
    ) -> Result<Vec<u8>, HsmError> {
        let mut template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
            Attribute::Modulus(kms_key.n_bytes().into_vec()),
            Attribute::PublicExponent(kms_key.e_bytes().into_vec()),
        ];
        if trusted {
            template.push(Attribute::Trusted(true));
        }
        let kms_wrapping_key = objects
            .track(session.create_object(&template).map_err(pkcs11("C_CreateObject (KMS wrapping public key)"))?);
        let oaep = oaep_mechanism(algorithm.oaep_hash());
        Ok(if algorithm.is_key_wrap() {
            // CKM_RSA_AES_KEY_WRAP layout, as KMS expects: OAEP(ephemeral key) || KWP(material).
            let ephemeral = objects.track(generate_ephemeral_kek(session, trusted)?);
            let mut out =
                session.wrap_key(&oaep, kms_wrapping_key, ephemeral).map_err(pkcs11("C_WrapKey (RSA-OAEP)"))?;
            let kwp = session
                .wrap_key(&Mechanism::AesKeyWrapPad, ephemeral, material)
                .map_err(pkcs11("C_WrapKey (AES key wrap with padding)"))?;
            if kwp.len() != KWP_WRAPPED_LEN {
                return Err(kwp_mismatch(kwp.len()));
            }
            out.extend_from_slice(&kwp);
            out
        } else {
            session.wrap_key(&oaep, kms_wrapping_key, material).map_err(pkcs11("C_WrapKey (RSA-OAEP)"))?
        })
    }

    /// Finds out which wrapping algorithms the token really performs, by performing them once
    /// with throwaway session keys.
    pub(super) fn probe(&self) -> Result<Vec<WrappingAlgorithm>, HsmError> {
        let slot = self.slot();
        let mechanisms = self.ctx.get_mechanism_list(slot).map_err(pkcs11("C_GetMechanismList"))?;
        let listed = |m: MechanismType| mechanisms.contains(&m);
        for m in [MechanismType::AES_KEY_GEN, MechanismType::RSA_PKCS_OAEP, MechanismType::AES_KEY_WRAP_PAD] {
            if let Ok(info) = self.ctx.get_mechanism_info(slot, m) {
                tracing::debug!(token = %self.label, mechanism = %m, wrap = info.wrap(), "mechanism listed");
            }
        }
        if !listed(MechanismType::AES_KEY_GEN)
            || !listed(MechanismType::RSA_PKCS_OAEP)
            || !listed(MechanismType::RSA_PKCS_KEY_PAIR_GEN)
        {
            tracing::warn!(token = %self.label, "token lacks AES key generation or RSA-OAEP");
            return Ok(Vec::new());
        }

        let session = self.session()?;
        let mut objects = SessionObjects::new(&session);
        let (rsa_public, rsa_private) = session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &[
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                    Attribute::ModulusBits(PROBE_RSA_BITS.into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                ],
                &[
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Unwrap(true),
                ],
            )
            .map_err(pkcs11("C_GenerateKeyPair (probe key)"))?;
        objects.track(rsa_public);
        objects.track(rsa_private);
        let subject = objects.track(generate_material(&session, false)?);

        let oaep_works = |hash: OaepHash| match session.wrap_key(&oaep_mechanism(hash), rsa_public, subject) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(token = %self.label, ?hash, error = %e, "RSA-OAEP wrap refused");
                false
            }
        };
        let sha1 = oaep_works(OaepHash::Sha1);
        let sha256 = oaep_works(OaepHash::Sha256);
        let kwp = listed(MechanismType::AES_KEY_WRAP_PAD) && {
            let kek = objects.track(generate_ephemeral_kek(&session, false)?);
            match session.wrap_key(&Mechanism::AesKeyWrapPad, kek, subject) {
                Ok(w) if w.len() == KWP_WRAPPED_LEN => true,
                Ok(w) => {
                    tracing::warn!(token = %self.label, "{}", kwp_mismatch(w.len()));
                    false
                }
                Err(e) => {
                    tracing::debug!(token = %self.label, error = %e, "AES key wrap with padding refused");
                    false
                }
            }
        };

        let supported: Vec<_> = WrappingAlgorithm::PREFERENCE
            .into_iter()
            .filter(|a| {
                let oaep = match a.oaep_hash() {
                    OaepHash::Sha1 => sha1,
                    OaepHash::Sha256 => sha256,
                };
                oaep && (kwp || !a.is_key_wrap())
            })
            .collect();
        tracing::info!(token = %self.label, supported = ?supported.iter().map(|a| a.as_str()).collect::<Vec<_>>(), "probed wrapping support");
        Ok(supported)
    }
}
