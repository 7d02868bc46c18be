//! The token objects of one operation: the templates of generated material and of the
//! ephemeral wrapping key (sensitive, extractable only to be wrapped, good for nothing else),
//! and the session objects destroyed when the operation ends, successful or not.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::token::pkcs11;
use crate::rotation::hsm::{HsmError, OaepHash, KEY_MATERIAL_LEN};

/// RFC 5649 output for 32 bytes of input. A token whose `CKM_AES_KEY_WRAP_PAD` gives anything
/// else implements the other reading of that mechanism (RFC 3394 with PKCS#7 padding, as
/// PKCS#11 3.0 defines it), which KMS would reject.
pub(super) const KWP_WRAPPED_LEN: usize = KEY_MATERIAL_LEN + 8;

/// Session objects created for one operation, destroyed when it ends, successful or not.
pub(super) struct SessionObjects<'s> {
    session: &'s Session,
    handles: Vec<ObjectHandle>,
}

impl<'s> SessionObjects<'s> {
    pub(super) fn new(session: &'s Session) -> Self {
        Self { session, handles: Vec::new() }
    }

    pub(super) fn track(&mut self, handle: ObjectHandle) -> ObjectHandle {
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
pub(in crate::rotation::hsm) fn generate_material(
    session: &Session,
    for_check_value: bool,
) -> Result<ObjectHandle, HsmError> {
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
pub(super) fn generate_ephemeral_kek(session: &Session, trusted: bool) -> Result<ObjectHandle, HsmError> {
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
pub(in crate::rotation::hsm) fn ensure_sensitive(
    session: &Session,
    key: ObjectHandle,
    label: &str,
) -> Result<(), HsmError> {
    let info = session.get_attribute_info(key, &[AttributeType::Value]).map_err(pkcs11("C_GetAttributeValue"))?;
    match info.as_slice() {
        [AttributeInfo::Available(_)] => Err(HsmError::KeyNotSensitive { label: label.to_owned() }),
        _ => Ok(()),
    }
}

/// RSA-OAEP with the same hash for the label and MGF1 and an empty label, as KMS expects.
pub(super) fn oaep_mechanism(hash: OaepHash) -> Mechanism<'static> {
    let (hash, mgf) = match hash {
        OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

pub(super) fn kwp_mismatch(len: usize) -> HsmError {
    HsmError::Software {
        operation: "CKM_AES_KEY_WRAP_PAD",
        reason: format!(
            "the token produced {len} bytes for a 32-byte key where RFC 5649 gives {KWP_WRAPPED_LEN}; \
             it implements a different padding, so RSA_AES_KEY_WRAP is not available with it"
        ),
    }
}
