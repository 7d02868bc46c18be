//! The wrapping algorithms and wrapping key sizes KMS offers for import, by their KMS names,
//! and the check of the KMS public key against the size asked for. No key material here.

use std::fmt;
use std::str::FromStr;

use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

use super::HsmError;

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
pub(super) enum OaepHash {
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

    pub(super) fn oaep_hash(self) -> OaepHash {
        match self {
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => OaepHash::Sha256,
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => OaepHash::Sha1,
        }
    }

    /// True for the two-layer RSA + AES-KWP algorithms.
    pub(super) fn is_key_wrap(self) -> bool {
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

/// Decodes the KMS wrapping key and checks it is RSA of the size KMS was asked for, so a mix-up
/// of key and spec is caught here rather than as an opaque failure inside `ImportKeyMaterial`.
pub(super) fn parse_kms_public_key(der: &[u8], spec: WrappingKeySpec) -> Result<rsa::PublicKey, HsmError> {
    let key = rsa::PublicKey::from_public_key_der(der)
        .map_err(|e| HsmError::InvalidPublicKey { reason: format!("not an RSA SubjectPublicKeyInfo ({e})") })?;
    let actual_bits = key.n().bit_width();
    if actual_bits != spec.modulus_bits() {
        return Err(HsmError::PublicKeySizeMismatch { expected: spec, actual_bits });
    }
    Ok(key)
}
