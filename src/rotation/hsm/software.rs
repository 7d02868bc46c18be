//! In-process key material source, for development and demos without an HSM.
//!
//! The material exists in this process's memory, so anything that can read that memory (a core
//! dump, a debugger, swap) can read the key. It is kept in [`Zeroizing`] buffers so it is at
//! least wiped when dropped, and the type can only be built through a constructor whose name says
//! what it is.

use aes_kw::aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_kw::aes::Aes256;
use aes_kw::KwpAes256;
use sha1::Sha1;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{
    parse_kms_public_key, CheckedWrap, HsmError, KeyMaterialSource, OaepHash, WrappedKeyMaterial, WrappingAlgorithm,
    WrappingKeySpec, CHECK_BLOCK, KEY_MATERIAL_LEN,
};

/// The buffer plaintext material lives in: wiped on drop.
type Material = Zeroizing<[u8; KEY_MATERIAL_LEN]>;

/// RFC 5649 output for 32 bytes of input: one 8-byte integrity block plus the padded input.
const KWP_WRAPPED_LEN: usize = KEY_MATERIAL_LEN + 8;

/// Generates material with the OS RNG and wraps it with pure-Rust RSA-OAEP and AES-KWP.
/// Supports all four KMS wrapping algorithms. Not for production keys: see the module docs.
#[derive(Debug)]
pub struct SoftwareSource {
    _deliberate: (),
}

impl SoftwareSource {
    /// A source whose key material passes through ordinary process memory. Only for development,
    /// tests and demos against emulated KMS; real keys belong in [`super::Pkcs11Source`].
    pub fn new_insecure_for_development() -> Self {
        tracing::warn!("using the in-process key material source: for development only, never for production keys");
        Self { _deliberate: () }
    }

    /// [`KeyMaterialSource::generate_and_wrap`] plus a key check value, for tests that play KMS.
    pub fn generate_and_wrap_with_check_block(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<CheckedWrap, HsmError> {
        let material = generate_material()?;
        let wrapped = wrap(&material, kms_public_key_der, spec, algorithm)?;
        let mut block = CHECK_BLOCK.into();
        aes256(&material)?.encrypt_block(&mut block);
        Ok(CheckedWrap { wrapped, check_value: block.into() })
    }
}

impl KeyMaterialSource for SoftwareSource {
    fn name(&self) -> &str {
        "software (insecure, development only)"
    }

    fn supported_algorithms(&self) -> Result<Vec<WrappingAlgorithm>, HsmError> {
        Ok(WrappingAlgorithm::PREFERENCE.to_vec())
    }

    fn generate_and_wrap(
        &self,
        kms_public_key_der: &[u8],
        spec: WrappingKeySpec,
        algorithm: WrappingAlgorithm,
    ) -> Result<WrappedKeyMaterial, HsmError> {
        let material = generate_material()?;
        wrap(&material, kms_public_key_der, spec, algorithm)
    }
}

fn generate_material() -> Result<Material, HsmError> {
    let mut material: Material = Zeroizing::new([0; KEY_MATERIAL_LEN]);
    getrandom::fill(&mut material[..]).map_err(|e| HsmError::Software {
        operation: "reading the OS random number generator",
        reason: e.to_string(),
    })?;
    Ok(material)
}

fn wrap(
    material: &Material,
    kms_public_key_der: &[u8],
    spec: WrappingKeySpec,
    algorithm: WrappingAlgorithm,
) -> Result<WrappedKeyMaterial, HsmError> {
    let kms_key = parse_kms_public_key(kms_public_key_der, spec)?;
    let bytes = if algorithm.is_key_wrap() {
        // CKM_RSA_AES_KEY_WRAP layout, as KMS expects: OAEP(ephemeral key) || KWP(material).
        let ephemeral = generate_material()?;
        let mut out = oaep(&kms_key, algorithm.oaep_hash(), &ephemeral[..])?;
        let mut kwp = [0u8; KWP_WRAPPED_LEN];
        KwpAes256::new_from_slice(&ephemeral[..])
            .map_err(|e| HsmError::Software { operation: "AES key wrap setup", reason: e.to_string() })?
            .wrap_key(&material[..], &mut kwp)
            .map_err(|e| HsmError::Software { operation: "AES key wrap with padding", reason: e.to_string() })?;
        out.extend_from_slice(&kwp);
        out
    } else {
        oaep(&kms_key, algorithm.oaep_hash(), &material[..])?
    };
    Ok(WrappedKeyMaterial::new(algorithm, bytes))
}

fn oaep(key: &rsa::PublicKey, hash: OaepHash, plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
    // OAEP with the same hash for the label and MGF1 and an empty label: what KMS expects.
    match hash {
        OaepHash::Sha1 => key.oaep_encrypt::<Sha1>(plaintext),
        OaepHash::Sha256 => key.oaep_encrypt::<Sha256>(plaintext),
    }
    .map_err(|e| HsmError::Software { operation: "RSA-OAEP encryption", reason: e.to_string() })
}

fn aes256(key: &Material) -> Result<Aes256, HsmError> {
    Aes256::new_from_slice(&key[..])
        .map_err(|e| HsmError::Software { operation: "AES key setup", reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::{Zeroize, ZeroizeOnDrop};

    /// Compile-time proof that the material buffer wipes itself when dropped.
    const _: fn() = || {
        fn wipes_on_drop<T: ZeroizeOnDrop>() {}
        wipes_on_drop::<Material>();
    };

    #[test]
    fn material_buffer_zeroizes() {
        let mut material = generate_material().unwrap();
        assert_ne!(*material, [0; KEY_MATERIAL_LEN], "32 random bytes were all zero");
        material.zeroize();
        assert_eq!(*material, [0; KEY_MATERIAL_LEN]);
    }
}
