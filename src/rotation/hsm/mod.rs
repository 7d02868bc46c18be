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

mod algorithm;
mod error;
mod kept;
mod pkcs11;
mod secret;
mod software;

#[cfg(test)]
mod tests;

pub use algorithm::{WrappingAlgorithm, WrappingKeySpec};
pub use error::{HsmError, NOT_VISIBLE};
pub(crate) use kept::label_matches;
pub use kept::{is_kms_material_id, KeptMaterial, LEGACY_PENDING_ID};
pub use pkcs11::{Pkcs11Source, WrapWithTrusted};
pub use secret::{CheckedWrap, HsmPin, WrappedKeyMaterial, CHECK_BLOCK};
pub use software::SoftwareSource;

use algorithm::{parse_kms_public_key, OaepHash};
use error::list_or_none;

/// Bytes of material a `SYMMETRIC_DEFAULT` KMS key takes: one AES-256 key.
pub const KEY_MATERIAL_LEN: usize = 32;

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

    /// New material as a persistent, sensitive token object with `CKA_LABEL` = `key_arn` and
    /// `CKA_ID` = `object_id`, named once, at creation. If the token already holds that object
    /// (a stopped run made it), that one is returned (then `true`), so a re-run never leaves
    /// an orphan and never makes a second material.
    fn keep_new_material(&self, key_arn: &str, object_id: &str) -> Result<(KeptMaterial, bool), HsmError> {
        let _ = (key_arn, object_id);
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

    /// Every object this login sees kept for `key_arn` (for a multi-Region key: for its key id).
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
}
