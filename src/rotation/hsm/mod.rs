//! Where new KMS key material comes from: generated and wrapped for import, never seen in clear.
//!
//! KMS `GetParametersForImport` hands out an RSA public key; the material we import must be
//! encrypted ("wrapped") to it with one of four algorithms. A [`KeyMaterialSource`] generates
//! 32 bytes of AES-256 material (what a `SYMMETRIC_DEFAULT` key takes) and returns only the
//! wrapped blob:
//!
//! - [`Pkcs11Source`] does both inside an HSM through PKCS#11, so the plaintext never exists
//!   outside the token. This is the one to use for real keys.
//! - [`SoftwareSource`] does the same in process memory, for development and demos only.
//!
//! Nothing here logs or formats key material, wrapped blobs or PINs: [`WrappedKeyMaterial`] and
//! [`HsmPin`] print lengths or `<redacted>`, and errors carry only names, sizes and return codes.
//! This module has no AWS dependency; the caller moves bytes between it and KMS.

mod pkcs11;
mod software;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

pub use pkcs11::{Pkcs11Source, WrapWithTrusted};
pub use software::SoftwareSource;

/// Bytes of material a `SYMMETRIC_DEFAULT` KMS key takes: one AES-256 key.
pub const KEY_MATERIAL_LEN: usize = 32;

/// The KMS `WrappingAlgorithm` values this tool can produce.
///
/// `RSAES_PKCS1_V1_5` is left out on purpose: KMS stopped accepting it in 2023.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WrappingAlgorithm {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256 over the material itself.
    RsaesOaepSha256,
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1 over the material itself.
    RsaesOaepSha1,
    /// RSA-OAEP (SHA-256) over an ephemeral AES-256 key, then RFC 5649 AES key wrap with padding
    /// of the material under that key (the PKCS#11 `CKM_RSA_AES_KEY_WRAP` format).
    RsaAesKeyWrapSha256,
    /// As [`Self::RsaAesKeyWrapSha256`], with SHA-1 in the OAEP step.
    RsaAesKeyWrapSha1,
}

/// The hash used in the OAEP step (for both the label hash and MGF1, as KMS expects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OaepHash {
    Sha1,
    Sha256,
}

impl WrappingAlgorithm {
    /// Every algorithm, strongest first: the order [`KeyMaterialSource::choose`] tries them in.
    ///
    /// Key wrap beats direct OAEP because it is what KMS recommends and works for any material
    /// size; SHA-256 beats SHA-1 within each family.
    pub const PREFERENCE: [WrappingAlgorithm; 4] = [
        WrappingAlgorithm::RsaAesKeyWrapSha256,
        WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha1,
        WrappingAlgorithm::RsaesOaepSha1,
    ];

    /// The exact string the KMS API uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
        }
    }

    fn oaep_hash(self) -> OaepHash {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => OaepHash::Sha256,
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => OaepHash::Sha1,
        }
    }

    /// True for the two-layer RSA + AES-KWP algorithms.
    fn is_key_wrap(self) -> bool {
        matches!(self, WrappingAlgorithm::RsaAesKeyWrapSha256 | WrappingAlgorithm::RsaAesKeyWrapSha1)
    }
}

impl fmt::Display for WrappingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WrappingAlgorithm {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::PREFERENCE
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| HsmError::UnknownName { kind: "wrapping algorithm", value: s.to_owned() })
    }
}

/// The KMS `WrappingKeySpec` values: the size of the RSA key KMS wraps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WrappingKeySpec {
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl WrappingKeySpec {
    pub const ALL: [WrappingKeySpec; 3] =
        [WrappingKeySpec::Rsa2048, WrappingKeySpec::Rsa3072, WrappingKeySpec::Rsa4096];

    /// The exact string the KMS API uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            WrappingKeySpec::Rsa2048 => "RSA_2048",
            WrappingKeySpec::Rsa3072 => "RSA_3072",
            WrappingKeySpec::Rsa4096 => "RSA_4096",
        }
    }

    /// Size of the RSA modulus in bits.
    pub const fn modulus_bits(self) -> u32 {
        match self {
            WrappingKeySpec::Rsa2048 => 2048,
            WrappingKeySpec::Rsa3072 => 3072,
            WrappingKeySpec::Rsa4096 => 4096,
        }
    }
}

impl fmt::Display for WrappingKeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WrappingKeySpec {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| HsmError::UnknownName { kind: "wrapping key spec", value: s.to_owned() })
    }
}

/// Key material encrypted to the KMS wrapping key: the `EncryptedKeyMaterial` of
/// `ImportKeyMaterial`.
///
/// Only the KMS private key can open it, but it is still treated as secret-adjacent: `Debug` and
/// `Display` print the algorithm and length, never the bytes, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKeyMaterial {
    algorithm: WrappingAlgorithm,
    bytes: Vec<u8>,
}

impl WrappedKeyMaterial {
    fn new(algorithm: WrappingAlgorithm, bytes: Vec<u8>) -> Self {
        Self { algorithm, bytes }
    }

    /// The algorithm the material was wrapped with; pass it to KMS with the blob.
    pub fn algorithm(&self) -> WrappingAlgorithm {
        self.algorithm
    }

    /// The bytes to send as `EncryptedKeyMaterial`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for WrappedKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKeyMaterial")
            .field("algorithm", &self.algorithm)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for WrappedKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes of key material wrapped with {}", self.bytes.len(), self.algorithm)
    }
}

/// Wrapped material plus an AES-256-ECB encryption of [`CHECK_BLOCK`] under the same key.
///
/// The check value lets a test that plays KMS (holding the RSA private key) prove the blob holds
/// exactly the key the source generated, without the source ever revealing that key. It is the
/// classic key check value: one block of ciphertext of a fixed plaintext, harmless to disclose.
#[derive(Clone, Debug)]
pub struct CheckedWrap {
    pub wrapped: WrappedKeyMaterial,
    pub check_value: [u8; 16],
}

/// The fixed plaintext block behind [`CheckedWrap::check_value`].
pub const CHECK_BLOCK: [u8; 16] = *b"kms-rotation-chk";

/// The HSM user PIN. Zeroized on drop and never printed.
///
/// Read it from an environment variable or stdin, never from argv, where every user of the
/// machine can see it.
pub struct HsmPin(Zeroizing<String>);

impl HsmPin {
    pub fn new(pin: impl Into<String>) -> Self {
        Self(Zeroizing::new(pin.into()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for HsmPin {
    fn from(pin: String) -> Self {
        Self::new(pin)
    }
}

impl From<Zeroizing<String>> for HsmPin {
    fn from(pin: Zeroizing<String>) -> Self {
        Self(pin)
    }
}

impl fmt::Debug for HsmPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HsmPin(<redacted>)")
    }
}

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
}

impl crate::error::Classified for HsmError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::HsmError
    }
}

fn list_or_none(items: &[impl fmt::Display]) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `CKA_ID` of a kept material before KMS has given it an id.
pub const PENDING_ID: &str = "pending";

/// Key material kept on a token as a persistent object, found again by its attributes alone:
/// `CKA_LABEL` is the KMS key ARN and `CKA_ID` the KMS `KeyMaterialId` (or [`PENDING_ID`]
/// between generation and ImportKeyMaterial).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptMaterial {
    /// The token's label.
    pub token: String,
    /// `CKA_LABEL`: the ARN of the key the material was generated for.
    pub key_arn: String,
    /// `CKA_ID`: the KMS key material id; `None` while pending.
    pub key_material_id: Option<String>,
}

impl fmt::Display for KeptMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token {:?} object CKA_LABEL={} CKA_ID={}",
            self.token,
            self.key_arn,
            self.key_material_id.as_deref().unwrap_or(PENDING_ID)
        )
    }
}

impl KeptMaterial {
    /// The object as a KMS tag value (the key ARN is the key's own, so it is left out).
    pub fn tag_value(&self) -> String {
        format!("pkcs11 token={} CKA_ID={}", self.token, self.key_material_id.as_deref().unwrap_or(PENDING_ID))
    }
}

/// The key id at the end of a key ARN (`…:key/<id>`), or the input when it has none.
pub(crate) fn key_id_of(arn: &str) -> &str {
    arn.rsplit_once(":key/").map(|(_, id)| id).unwrap_or(arn)
}

/// Whether material labelled `label` belongs to the key `key_arn`. Related multi-Region keys
/// share their key id (`mrk-…`) and their material, so for them the id decides, not the Region.
pub(crate) fn label_matches(label: &str, key_arn: &str) -> bool {
    let id = key_id_of(key_arn);
    label == key_arn || (id.starts_with("mrk-") && key_id_of(label) == id)
}

/// Something that can generate AES-256 key material and hand it out only wrapped for KMS.
///
/// `Send + Sync` so one source can be shared by a CLI or an async runtime; implementations
/// serialise access to their HSM session internally.
pub trait KeyMaterialSource: Send + Sync {
    /// Short human name for logs and errors, e.g. `pkcs11:token-label`.
    fn name(&self) -> &str;

    /// The algorithms this source can actually perform, in [`WrappingAlgorithm::PREFERENCE`]
    /// order. For an HSM this is probed, not taken from the mechanism list.
    fn supported_algorithms(&self) -> Result<Vec<WrappingAlgorithm>, HsmError>;

    /// The algorithm to ask KMS for: `pinned` if given and supported, else the strongest
    /// supported one.
    fn choose(&self, pinned: Option<WrappingAlgorithm>) -> Result<WrappingAlgorithm, HsmError> {
        let supported = self.supported_algorithms()?;
        let chosen = match pinned {
            Some(algorithm) if supported.contains(&algorithm) => algorithm,
            Some(algorithm) => {
                return Err(HsmError::AlgorithmUnsupported {
                    source_name: self.name().to_owned(),
                    algorithm,
                    supported,
                })
            }
            None => WrappingAlgorithm::PREFERENCE
                .into_iter()
                .find(|a| supported.contains(a))
                .ok_or_else(|| HsmError::NoSupportedAlgorithm { source_name: self.name().to_owned() })?,
        };
        tracing::info!(
            source = self.name(),
            algorithm = chosen.as_str(),
            pinned = pinned.is_some(),
            supported = %list_or_none(&supported),
            "chose wrapping algorithm"
        );
        Ok(chosen)
    }

    /// Generate 32 bytes of new key material and return it wrapped to `kms_public_key_der`.
    ///
    /// `kms_public_key_der` is the `PublicKey` of `GetParametersForImport` (DER
    /// SubjectPublicKeyInfo); its size must match `spec`.
    fn generate_and_wrap(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<WrappedKeyMaterial, HsmError>;

    /// True when this source keeps what it generates (an HSM token), so that the material can
    /// be imported again. The rotation then uses the `*_kept` methods instead of
    /// [`Self::generate_and_wrap`].
    fn keeps_material(&self) -> bool {
        false
    }

    /// New material as a persistent, sensitive token object labelled for `key_arn` and pending
    /// its KMS id; or the pending object a stopped run left for that key (then `true`), so a
    /// re-run never leaves an orphan.
    fn keep_new_material(&self, key_arn: &str) -> Result<(KeptMaterial, bool), HsmError> {
        let _ = key_arn;
        Err(HsmError::CannotKeep { source_name: self.name().to_owned(), action: "keep new material" })
    }

    /// Wraps kept material to `kms_public_key_der`, inside the token.
    fn wrap_kept(
        &self,
        kept: &KeptMaterial,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<WrappedKeyMaterial, HsmError> {
        let _ = (kept, kms_public_key_der, spec, algorithm);
        Err(HsmError::CannotKeep { source_name: self.name().to_owned(), action: "wrap kept material" })
    }

    /// Gives the pending material of `key_arn` its KMS id (`CKA_ID`); a no-op when a material
    /// with that id is already kept.
    fn name_kept(&self, key_arn: &str, key_material_id: &str) -> Result<KeptMaterial, HsmError> {
        let _ = key_material_id;
        Err(HsmError::PendingNotKept { key_arn: key_arn.to_owned() })
    }

    /// Every material kept for `key_arn` (for a multi-Region key: for its key id).
    fn kept_materials(&self, key_arn: &str) -> Result<Vec<KeptMaterial>, HsmError> {
        let _ = key_arn;
        Ok(Vec::new())
    }

    /// Destroys every kept object labelled exactly `key_arn` and returns what it destroyed.
    /// Only for retirement (issue 22), after KMS has deleted the key: no key can take that
    /// material again, so keeping it protects nothing. Never called for a key KMS still has.
    fn destroy_kept(&self, key_arn: &str) -> Result<Vec<KeptMaterial>, HsmError> {
        let _ = key_arn;
        Err(HsmError::CannotKeep { source_name: self.name().to_owned(), action: "destroy kept material" })
    }

    /// The kept material with this KMS id, if the token holds it.
    fn find_kept(&self, key_arn: &str, key_material_id: &str) -> Result<Option<KeptMaterial>, HsmError> {
        Ok(self.kept_materials(key_arn)?.into_iter().find(|k| k.key_material_id.as_deref() == Some(key_material_id)))
    }
}

/// Decodes the KMS wrapping key and checks it is RSA of the size KMS was asked for, so a mix-up
/// of key and spec is caught here rather than as an opaque failure inside `ImportKeyMaterial`.
fn parse_kms_public_key(der: &[u8], spec: WrappingKeySpec) -> Result<rsa::PublicKey, HsmError> {
    let key = rsa::PublicKey::from_public_key_der(der)
        .map_err(|e| HsmError::InvalidPublicKey { reason: format!("not an RSA SubjectPublicKeyInfo ({e})") })?;
    let actual_bits = key.n().bit_width();
    if actual_bits != spec.modulus_bits() {
        return Err(HsmError::PublicKeySizeMismatch { expected: spec, actual_bits });
    }
    Ok(key)
}
