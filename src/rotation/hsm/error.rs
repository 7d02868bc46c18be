//! What can go wrong with an HSM or a key material source, phrased so that an operator knows
//! what to do next. No variant holds key material, wrapped bytes or a PIN.

use std::fmt;

use super::{WrappingAlgorithm, WrappingKeySpec};

/// What went wrong, phrased so that an operator knows what to do next.
///
/// No variant holds key material, wrapped bytes or a PIN.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("unknown {kind} {value:?}")]
    UnknownName { kind: &'static str, value: String },

    #[error(
        "cannot load the PKCS#11 module {path}: {reason}; check the module path (SoftHSM on Debian: \
         /usr/lib/softhsm/libsofthsm2.so) and that the library matches this machine's architecture"
    )]
    ModuleLoad { path: String, reason: String },

    #[error("no PKCS#11 token labelled {label:?}; tokens found: {}; check the token label (SoftHSM: `softhsm2-util --show-slots`)", list_or_none(.available))]
    TokenNotFound { label: String, available: Vec<String> },

    #[error("{count} PKCS#11 tokens are labelled {label:?}; relabel them so the label names exactly one token")]
    TokenAmbiguous { label: String, count: usize },

    #[error(
        "the HSM rejected the user PIN for token {label:?} (CKR_PIN_INCORRECT); check the PIN you supplied \
         (each failed attempt may count toward locking the token)"
    )]
    PinIncorrect { label: String },

    #[error("the user PIN of token {label:?} is locked (CKR_PIN_LOCKED); the security officer must reset it")]
    PinLocked { label: String },

    #[error("the user PIN of token {label:?} has not been initialised; initialise it with the security officer PIN")]
    PinNotInitialized { label: String },

    #[error("{source_name} cannot wrap with {algorithm}; it supports: {}; pin one of those or use another HSM", list_or_none(.supported))]
    AlgorithmUnsupported { source_name: String, algorithm: WrappingAlgorithm, supported: Vec<WrappingAlgorithm> },

    #[error(
        "{source_name} supports none of the KMS wrapping algorithms; it needs AES-256 key generation \
         and RSA-OAEP key wrapping (plus AES key wrap with padding for the RSA_AES_KEY_WRAP ones)"
    )]
    NoSupportedAlgorithm { source_name: String },

    #[error(
        "the KMS wrapping public key is not usable: {reason}; pass the PublicKey bytes from \
         GetParametersForImport unchanged (DER SubjectPublicKeyInfo, not base64 or PEM)"
    )]
    InvalidPublicKey { reason: String },

    #[error(
        "the KMS wrapping public key has a {actual_bits}-bit modulus but {expected} was requested; \
         pass the WrappingKeySpec used in GetParametersForImport"
    )]
    PublicKeySizeMismatch { expected: WrappingKeySpec, actual_bits: u32 },

    #[error(
        "token {label:?} did not keep the generated key sensitive (its CKA_VALUE is readable); \
         refusing to use an HSM that would let key material leave it"
    )]
    KeyNotSensitive { label: String },

    #[error("PKCS#11 {operation} failed: {source}")]
    Pkcs11 {
        operation: &'static str,
        #[source]
        source: cryptoki::error::Error,
    },

    #[error("{operation} failed: {reason}")]
    Software { operation: &'static str, reason: String },

    #[error(
        "{source_name} cannot keep key material, so it cannot {action}; use an HSM (--hsm pkcs11), \
         which keeps every material it imports as a token object"
    )]
    CannotKeep { source_name: String, action: &'static str },

    #[error(
        "the HSM holds no key material {key_material_id} for {key_arn}: it was imported by a version that did not \
         keep material, or the token was not restored from its backup; only that exact material can be imported again"
    )]
    NotKept { key_arn: String, key_material_id: String },

    #[error(
        "the HSM holds no pending key material for {key_arn}: KMS lists new material the HSM does not hold, \
         so completing this rotation would make KMS its only holder; refusing"
    )]
    PendingNotKept { key_arn: String },

    /// The material is kept (KMS or the key's tags name its object), but this login cannot
    /// use it: on AWS CloudHSM a key belongs to the crypto user (CU) that created it; other
    /// CUs do not see it, and CUs it is shared with may use it but not wrap it.
    #[error(
        "key material {key_material_id} of {key_arn} is kept in HSM object CKA_ID={object_id}, which is {NOT_VISIBLE}: \
         {reason}; run this as the crypto user that created it (docs/rotation.md, \"Which crypto user\"), or check \
         that this is the token (restored from its backup) that keeps it"
    )]
    NotVisible { key_arn: String, key_material_id: String, object_id: String, reason: String },
}

/// How material that exists but is out of this login's reach is named, everywhere.
pub const NOT_VISIBLE: &str = "not visible to this user (CloudHSM keys belong to the CU that created them)";

impl crate::error::Classified for HsmError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::HsmError
    }
}

pub(super) fn list_or_none(items: &[impl fmt::Display]) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
