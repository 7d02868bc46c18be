//! The values that must never reach a log: the wrapped material (printed as its algorithm
//! and length) and the HSM PIN (zeroized on drop, printed as `<redacted>`).

use std::fmt;

use zeroize::Zeroizing;

use super::WrappingAlgorithm;

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
    pub(super) fn new(algorithm: WrappingAlgorithm, bytes: Vec<u8>) -> Self {
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

    pub(super) fn expose(&self) -> &str {
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
