//! Key material generated and wrapped inside an HSM, through PKCS#11.
//!
//! Material for KMS is a *persistent token object* (custody, see [`Pkcs11Source::keep_new_material`]):
//! sensitive (its value cannot be read), extractable only so that it can leave the token
//! wrapped, labelled with the key ARN and the KMS key material id so that it can be found and
//! imported again. For each wrap the token imports the KMS public key as a session object and
//! wraps with `C_WrapKey`; the plaintext never leaves the token and the session objects are
//! destroyed before returning. ([`KeyMaterialSource::generate_and_wrap`] still makes throwaway
//! session material, for the probe and the tests that play KMS.)
//!
//! `RSA_AES_KEY_WRAP_*` is composed from two wraps inside the token (RSA-OAEP of an ephemeral
//! AES key, then RFC 5649 key wrap of the material under it) because few tokens, SoftHSM
//! included, implement `CKM_RSA_AES_KEY_WRAP` and cryptoki 0.12 has no binding for it.
//!
//! What a token can do is probed by doing it once with throwaway keys: tokens advertise
//! mechanisms whose parameters they then reject (SoftHSM 2.6 lists `CKM_RSA_PKCS_OAEP` but only
//! accepts SHA-1), so the mechanism list alone would promise algorithms that then fail.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rsa::traits::PublicKeyParts;

use super::{
    label_matches, parse_kms_public_key, CheckedWrap, HsmError, HsmPin, KeptMaterial, KeyMaterialSource, OaepHash,
    WrappedKeyMaterial, WrappingAlgorithm, WrappingKeySpec, CHECK_BLOCK, KEY_MATERIAL_LEN, PENDING_ID,
};

/// RFC 5649 output for 32 bytes of input. A token whose `CKM_AES_KEY_WRAP_PAD` gives anything
/// else implements the other reading of that mechanism (RFC 3394 with PKCS#7 padding, as
/// PKCS#11 3.0 defines it), which KMS would reject.
const KWP_WRAPPED_LEN: usize = KEY_MATERIAL_LEN + 8;

/// Size of the throwaway RSA key used only to probe OAEP support.
const PROBE_RSA_BITS: u64 = 2048;

/// A PKCS#11 token that generates and wraps key material. The production source.
///
/// Holds one logged-in read-write session (kept material is a token object); calls are
/// serialised on it.
pub struct Pkcs11Source {
    name: String,
    label: String,
    ctx: Pkcs11,
    slot: Slot,
    session: Mutex<Session>,
    supported: OnceLock<Vec<WrappingAlgorithm>>,
    wrap_with_trusted: OnceLock<WrapWithTrusted>,
}

/// Whether kept material is marked `CKA_WRAP_WITH_TRUSTED`, so that only keys the token holds
/// as trusted can wrap it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapWithTrusted {
    /// The token lets this user mark the KMS wrapping key `CKA_TRUSTED`: kept material can be
    /// wrapped only to such keys.
    Used,
    /// The token refuses `CKA_TRUSTED` to a user session (SoftHSM 2.6 allows it to the
    /// security officer only), so a material marked wrap-with-trusted could never reach KMS.
    Unsupported,
}

impl std::fmt::Debug for Pkcs11Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Source")
            .field("label", &self.label)
            .field("slot", &self.slot.id())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Source {
    /// Loads the PKCS#11 module at `module`, finds the token labelled `token_label` and logs in
    /// as its user.
    ///
    /// Tokens are found by label because slot ids are not stable (SoftHSM makes them up from the
    /// serial number). The PIN is used for this login only and not kept.
    ///
    /// A module is loaded and initialised once per process and then shared by every source on
    /// it. Login state is per token and process too, so a second source on a token that is
    /// already logged in shares that login (and the token does not check its PIN again).
    pub fn open(module: impl AsRef<Path>, token_label: &str, pin: &HsmPin) -> Result<Self, HsmError> {
        let ctx = context(module.as_ref())?;
        let label = token_label.trim_end().to_owned();
        let slot = find_token(&ctx, &label)?;
        // Read-write: kept material is a token object, and it is renamed once KMS names it.
        let session = ctx.open_rw_session(slot).map_err(pkcs11("C_OpenSession"))?;
        login(&session, &label, pin)?;
        tracing::info!(token = %label, slot = slot.id(), "logged in to PKCS#11 token");
        Ok(Self {
            name: format!("pkcs11 token {label:?}"),
            label,
            ctx,
            slot,
            session: Mutex::new(session),
            supported: OnceLock::new(),
            wrap_with_trusted: OnceLock::new(),
        })
    }

    /// Whether this token lets kept material be `CKA_WRAP_WITH_TRUSTED` (probed once: can a
    /// user session create a `CKA_TRUSTED` public key?).
    pub fn wrap_with_trusted(&self) -> WrapWithTrusted {
        *self.wrap_with_trusted.get_or_init(|| {
            let session = self.session();
            let probe = session.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Wrap(true),
                Attribute::Trusted(true),
                Attribute::Modulus(vec![0xc5; 256]),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            ]);
            let answer = match probe {
                Ok(handle) => {
                    let _ = session.destroy_object(handle);
                    WrapWithTrusted::Used
                }
                Err(e) => {
                    tracing::info!(token = %self.label, error = %e, "token refuses CKA_TRUSTED to the user: kept material is not wrap-with-trusted");
                    WrapWithTrusted::Unsupported
                }
            };
            answer
        })
    }

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

    /// [`KeyMaterialSource::generate_and_wrap`] plus a key check value computed by the token with
    /// the same in-HSM key, for tests that play KMS. Production code uses `generate_and_wrap`.
    pub fn generate_and_wrap_with_check_block(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<CheckedWrap, HsmError> {
        let (wrapped, check_value) = self.wrap_in_token(kms_public_key_der, spec, algorithm, true)?;
        let check_value = check_value.expect("asked for a check value");
        Ok(CheckedWrap { wrapped, check_value })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock cannot leave the session half-way through an
        // operation: every PKCS#11 call used here is a single, complete call.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the source's logged-in session (tests inspect objects through it).
    #[cfg(test)]
    pub(super) fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        f(&self.session())
    }

    fn wrap_in_token(
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

        let session = self.session();
        let mut objects = SessionObjects::new(&session);
        let material = objects.track(generate_material(&session, with_check_value)?);
        ensure_sensitive(&session, material, &self.label)?;
        let bytes = self.wrap_handle(&session, &mut objects, material, &kms_key, algorithm, false)?;

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
        tracing::info!(token = %self.label, algorithm = algorithm.as_str(), wrapped_len = bytes.len(), "generated and wrapped key material in the HSM");
        Ok((WrappedKeyMaterial::new(algorithm, bytes), check_value))
    }

    /// Wraps `material` (a key on the token) to the KMS public key with `algorithm`.
    fn wrap_handle(
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
    fn probe(&self) -> Result<Vec<WrappingAlgorithm>, HsmError> {
        let mechanisms = self.ctx.get_mechanism_list(self.slot).map_err(pkcs11("C_GetMechanismList"))?;
        let listed = |m: MechanismType| mechanisms.contains(&m);
        for m in [MechanismType::AES_KEY_GEN, MechanismType::RSA_PKCS_OAEP, MechanismType::AES_KEY_WRAP_PAD] {
            if let Ok(info) = self.ctx.get_mechanism_info(self.slot, m) {
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

        let session = self.session();
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

/// Session objects created for one operation, destroyed when it ends, successful or not.
struct SessionObjects<'s> {
    session: &'s Session,
    handles: Vec<ObjectHandle>,
}

impl<'s> SessionObjects<'s> {
    fn new(session: &'s Session) -> Self {
        Self { session, handles: Vec::new() }
    }

    fn track(&mut self, handle: ObjectHandle) -> ObjectHandle {
        self.handles.push(handle);
        handle
    }
}

impl Drop for SessionObjects<'_> {
    fn drop(&mut self) {
        for handle in self.handles.drain(..).rev() {
            if let Err(e) = self.session.destroy_object(handle) {
                // Session objects also vanish when the session closes, so this only delays it.
                tracing::warn!(error = %e, "could not destroy a session object; it goes when the session closes");
            }
        }
    }
}

/// Generates the 32 bytes of key material as a session AES-256 key that can be wrapped but not
/// read, and can do nothing else (except encrypt one check block when a test asks for it).
pub(super) fn generate_material(session: &Session, for_check_value: bool) -> Result<ObjectHandle, HsmError> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen((KEY_MATERIAL_LEN as u64).into()),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(for_check_value),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
            ],
        )
        .map_err(pkcs11("C_GenerateKey (AES-256 key material)"))
}

/// The ephemeral AES-256 key of `RSA_AES_KEY_WRAP_*`: wraps the material, is itself wrapped to
/// KMS, and is destroyed with the session objects.
fn generate_ephemeral_kek(session: &Session, trusted: bool) -> Result<ObjectHandle, HsmError> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                // Kept material that is wrap-with-trusted can only be wrapped by a trusted key.
                Attribute::Trusted(trusted),
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen((KEY_MATERIAL_LEN as u64).into()),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(false),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
            ],
        )
        .map_err(pkcs11("C_GenerateKey (ephemeral AES-256 key)"))
}

/// Refuses a token that ignored `CKA_SENSITIVE`: then the material could be read out in clear.
///
/// Asks with `C_GetAttributeValue` for the size only; cryptoki's `get_attributes` would hide a
/// refusal as an empty result.
pub(super) fn ensure_sensitive(session: &Session, key: ObjectHandle, label: &str) -> Result<(), HsmError> {
    let info = session.get_attribute_info(key, &[AttributeType::Value]).map_err(pkcs11("C_GetAttributeValue"))?;
    match info.as_slice() {
        [AttributeInfo::Available(_)] => Err(HsmError::KeyNotSensitive { label: label.to_owned() }),
        _ => Ok(()),
    }
}

/// RSA-OAEP with the same hash for the label and MGF1 and an empty label, as KMS expects.
fn oaep_mechanism(hash: OaepHash) -> Mechanism<'static> {
    let (hash, mgf) = match hash {
        OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

fn kwp_mismatch(len: usize) -> HsmError {
    HsmError::Software {
        operation: "CKM_AES_KEY_WRAP_PAD",
        reason: format!(
            "the token produced {len} bytes for a 32-byte key where RFC 5649 gives {KWP_WRAPPED_LEN}; \
             it implements a different padding, so RSA_AES_KEY_WRAP is not available with it"
        ),
    }
}

/// The process-wide context for `module`, loaded and initialised on first use.
///
/// PKCS#11 allows one `C_Initialize` per process, and unloading an initialised module without
/// `C_Finalize` (which would end every other source's sessions) is not safe either, so contexts
/// are kept for the life of the process.
fn context(module: &Path) -> Result<Pkcs11, HsmError> {
    static CONTEXTS: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut contexts = CONTEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = contexts.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    let load_error = |reason: String| HsmError::ModuleLoad { path: module.display().to_string(), reason };
    let ctx = Pkcs11::new(module).map_err(|e| load_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Already initialised by other code in this process: use it as it is.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_error(format!("C_Initialize failed: {e}"))),
    }
    contexts.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let mut available = Vec::new();
    let mut matching = Vec::new();
    for slot in ctx.get_slots_with_initialized_token().map_err(pkcs11("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(pkcs11("C_GetTokenInfo"))?;
        if info.label() == label {
            matching.push(slot);
        }
        available.push(info.label().to_owned());
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound { label: label.to_owned(), available }),
        _ => Err(HsmError::TokenAmbiguous { label: label.to_owned(), count: matching.len() }),
    }
}

fn login(session: &Session, label: &str, pin: &HsmPin) -> Result<(), HsmError> {
    // AuthPin is a secrecy::SecretString: this copy is zeroized when dropped too.
    let auth = AuthPin::from(pin.expose());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(HsmError::PinIncorrect { label: label.to_owned() }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked { label: label.to_owned() }),
        Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
            Err(HsmError::PinNotInitialized { label: label.to_owned() })
        }
        Err(e) => Err(pkcs11("C_Login")(e)),
    }
}

fn pkcs11(operation: &'static str) -> impl Fn(CkError) -> HsmError {
    move |source| HsmError::Pkcs11 { operation, source }
}
