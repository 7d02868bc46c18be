//! Tests against a real SoftHSM2 token, with the test playing KMS: it holds the RSA private key,
//! unwraps what the source produced and checks it against the source's key check value.
//!
//! This file holds the fixtures (the SoftHSM token, the KMS stand-in); `pkcs11` tests the
//! token source, `sources` what every source shares (names, errors, the software source).
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at the first `C_Initialize` of the process, and a process
//! initialises a module once. So every test in this binary shares one token directory, made on
//! first use; tests that must not see each other's state use different tokens in it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use aes_kw::aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_kw::aes::Aes256;
use aes_kw::KwpAes256;
use base64::Engine as _;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType};
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use sha1::Sha1;
use sha2::Sha256;
use zeroize::Zeroizing;

mod pkcs11;
mod sources;

use super::pkcs11::{ensure_sensitive, generate_material};
use super::*;

const TOKEN: &str = "krg-test";
/// Only the wrong-PIN test logs in here: a token already logged in answers any PIN with
/// CKR_USER_ALREADY_LOGGED_IN, which would hide the wrong PIN.
const WRONG_PIN_TOKEN: &str = "krg-test-wrong-pin";
/// Only the clean-up test uses this one, so no other test's session objects are in view.
const ISOLATED_TOKEN: &str = "krg-test-isolated";
const PIN: &str = "4711-user-pin";
const SO_PIN: &str = "0815-so-pin";

struct SoftHsm {
    module: PathBuf,
}

/// The SoftHSM module and a token directory private to this test process.
fn softhsm() -> &'static SoftHsm {
    static FIXTURE: OnceLock<SoftHsm> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let module = std::env::var_os("KRG_PKCS11_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert!(module.exists(), "{} is missing: install SoftHSM2 (scripts/setup)", module.display());

        let dir = token_dir();
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        for label in [TOKEN, WRONG_PIN_TOKEN, ISOLATED_TOKEN] {
            init_token(&conf, label);
        }
        // Before any C_Initialize in this process: OnceLock runs this exactly once, and every
        // PKCS#11 test gets here first. Nothing else in the test binary reads the environment
        // from C concurrently.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        SoftHsm { module }
    })
}

/// A fresh directory for this process; those of earlier, finished runs are removed.
fn token_dir() -> PathBuf {
    const PREFIX: &str = "krg-softhsm-test-";
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("{PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn init_token(conf: &Path, label: &str) {
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN])
        .output()
        .expect("softhsm2-util not found: install SoftHSM2 (scripts/setup)");
    assert!(out.status.success(), "softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn open(label: &str) -> Pkcs11Source {
    Pkcs11Source::open(&softhsm().module, label, &HsmPin::new(PIN)).unwrap()
}

/// The KMS side of the test: an RSA key pair per wrapping key spec, made once per process.
struct Kms {
    private: rsa::PrivateKey,
    public_der: Vec<u8>,
    spec: WrappingKeySpec,
}

fn kms(spec: WrappingKeySpec) -> &'static Kms {
    static KEYS: [OnceLock<Kms>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = WrappingKeySpec::ALL.iter().position(|s| *s == spec).unwrap();
    KEYS[slot].get_or_init(|| {
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, spec.modulus_bits() as usize).unwrap();
        let public_der = private.to_public_key().to_public_key_der().unwrap().into_vec();
        Kms { private, public_der, spec }
    })
}

/// What KMS does in ImportKeyMaterial: recover the 32 bytes of material from the blob.
fn kms_unwrap(kms: &Kms, wrapped: &WrappedKeyMaterial) -> Zeroizing<Vec<u8>> {
    let oaep_decrypt = |ciphertext: &[u8]| {
        Zeroizing::new(
            match wrapped.algorithm().oaep_hash() {
                OaepHash::Sha1 => kms.private.oaep_decrypt::<Sha1>(ciphertext),
                OaepHash::Sha256 => kms.private.oaep_decrypt::<Sha256>(ciphertext),
            }
            .expect("OAEP decryption failed: blob not wrapped as KMS expects"),
        )
    };
    if !wrapped.algorithm().is_key_wrap() {
        assert_eq!(wrapped.len(), kms.private.size());
        return oaep_decrypt(wrapped.as_bytes());
    }
    // RSA_AES_KEY_WRAP: the first modulus-size bytes are the OAEP-wrapped AES key, then KWP.
    let (rsa_part, kwp_part) = wrapped.as_bytes().split_at(kms.private.size());
    assert_eq!(kwp_part.len(), KEY_MATERIAL_LEN + 8, "RFC 5649 output for 32 bytes");
    let ephemeral = oaep_decrypt(rsa_part);
    let mut material = Zeroizing::new(vec![0u8; KEY_MATERIAL_LEN]);
    KwpAes256::new_from_slice(&ephemeral)
        .unwrap()
        .unwrap_key(kwp_part, &mut material)
        .expect("AES-KWP unwrap failed: not RFC 5649");
    material
}

fn check_value(material: &[u8]) -> [u8; 16] {
    assert_eq!(material.len(), KEY_MATERIAL_LEN);
    let mut block = CHECK_BLOCK.into();
    Aes256::new_from_slice(material).unwrap().encrypt_block(&mut block);
    block.into()
}

fn assert_round_trip(kms: &Kms, checked: &CheckedWrap, algorithm: WrappingAlgorithm) {
    assert_eq!(checked.wrapped.algorithm(), algorithm);
    let material = kms_unwrap(kms, &checked.wrapped);
    assert_eq!(
        check_value(&material),
        checked.check_value,
        "{algorithm} with {}: the unwrapped material is not the key the source generated",
        kms.spec
    );
}
