//! Tests against a real SoftHSM2 token, with the test playing KMS: it holds the RSA private key,
//! unwraps what the source produced and checks it against the source's key check value.
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

#[test]
fn pkcs11_supports_exactly_what_softhsm_can_do() {
    let source = open(TOKEN);
    // SoftHSM 2.6.1 lists CKM_RSA_PKCS_OAEP but rejects SHA-256 in it: only probing shows that.
    assert_eq!(
        source.supported_algorithms().unwrap(),
        [WrappingAlgorithm::RsaAesKeyWrapSha1, WrappingAlgorithm::RsaesOaepSha1]
    );
    assert_eq!(source.choose(None).unwrap(), WrappingAlgorithm::RsaAesKeyWrapSha1);
    assert_eq!(source.choose(Some(WrappingAlgorithm::RsaesOaepSha1)).unwrap(), WrappingAlgorithm::RsaesOaepSha1);

    let err = source.choose(Some(WrappingAlgorithm::RsaesOaepSha256)).unwrap_err();
    assert!(matches!(err, HsmError::AlgorithmUnsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("RSAES_OAEP_SHA_256") && msg.contains("RSA_AES_KEY_WRAP_SHA_1"), "{msg}");

    let kms = kms(WrappingKeySpec::Rsa2048);
    let err = source.generate_and_wrap(&kms.public_der, kms.spec, WrappingAlgorithm::RsaAesKeyWrapSha256).unwrap_err();
    assert!(matches!(err, HsmError::AlgorithmUnsupported { .. }), "{err:?}");
}

#[test]
fn pkcs11_round_trip_every_supported_algorithm() {
    let source = open(TOKEN);
    let supported = source.supported_algorithms().unwrap();
    assert!(!supported.is_empty());
    for spec in [WrappingKeySpec::Rsa2048, WrappingKeySpec::Rsa4096] {
        let kms = kms(spec);
        for &algorithm in &supported {
            let first = source.generate_and_wrap_with_check_block(&kms.public_der, spec, algorithm).unwrap();
            assert_round_trip(kms, &first, algorithm);
            let second = source.generate_and_wrap_with_check_block(&kms.public_der, spec, algorithm).unwrap();
            assert_round_trip(kms, &second, algorithm);
            assert_ne!(first.check_value, second.check_value, "every wrap must carry fresh material");

            let plain = source.generate_and_wrap(&kms.public_der, spec, algorithm).unwrap();
            assert_eq!(plain.len(), first.wrapped.len());
            assert_eq!(kms_unwrap(kms, &plain).len(), KEY_MATERIAL_LEN);
        }
    }
}

#[test]
fn pkcs11_leaves_no_session_objects_behind() {
    let source = open(ISOLATED_TOKEN);
    let kms = kms(WrappingKeySpec::Rsa2048);
    // The probe runs first, on this token, and has the token refuse a wrap half-way through
    // (OAEP with SHA-256): its objects must go as well as those of the successful wraps.
    for algorithm in source.supported_algorithms().unwrap() {
        source.generate_and_wrap(&kms.public_der, kms.spec, algorithm).unwrap();
        source.generate_and_wrap_with_check_block(&kms.public_der, kms.spec, algorithm).unwrap();
    }
    let left = source.with_session(|s| s.find_objects(&[]).unwrap());
    assert!(left.is_empty(), "{} objects left on the token", left.len());
}

#[test]
fn pkcs11_material_cannot_be_read_out() {
    let source = open(TOKEN);
    source.with_session(|session| {
        let key = generate_material(session, false).unwrap();
        let value = session.get_attribute_info(key, &[AttributeType::Value]).unwrap();
        assert!(matches!(value.as_slice(), [AttributeInfo::Sensitive]), "CKA_VALUE must be refused: {value:?}");
        // cryptoki reports the refusal as an empty list, not an error: never rely on that.
        assert!(session.get_attributes(key, &[AttributeType::Value]).unwrap().is_empty());
        ensure_sensitive(session, key, TOKEN).unwrap();

        let flags = session
            .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::Token])
            .unwrap();
        for flag in flags {
            match flag {
                Attribute::Sensitive(v) => assert!(v, "must be sensitive"),
                Attribute::Extractable(v) => assert!(v, "must be wrappable"),
                Attribute::Token(v) => assert!(!v, "must be a session object"),
                other => panic!("unexpected {other:?}"),
            }
        }
        session.destroy_object(key).unwrap();
    });
}

#[test]
fn pkcs11_wrong_pin_says_so_without_the_pin() {
    let wrong = "wrong-pin-93611";
    let err = Pkcs11Source::open(&softhsm().module, WRONG_PIN_TOKEN, &HsmPin::new(wrong)).unwrap_err();
    assert!(matches!(err, HsmError::PinIncorrect { .. }), "{err:?}");
    let (display, debug) = (err.to_string(), format!("{err:?}"));
    assert!(display.contains("PIN") && display.contains("rejected"), "{display}");
    for text in [&display, &debug] {
        assert!(!text.contains(wrong) && !text.contains(PIN), "{text}");
    }
}

#[test]
fn pkcs11_unknown_label_lists_the_tokens() {
    let err = Pkcs11Source::open(&softhsm().module, "no-such-token", &HsmPin::new(PIN)).unwrap_err();
    assert!(matches!(err, HsmError::TokenNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no-such-token") && msg.contains(TOKEN) && msg.contains(WRONG_PIN_TOKEN), "{msg}");
    assert!(!msg.contains(PIN), "{msg}");
}

#[test]
fn pkcs11_missing_module_names_the_path() {
    let err = Pkcs11Source::open("/nonexistent/libpkcs11.so", TOKEN, &HsmPin::new(PIN)).unwrap_err();
    assert!(matches!(err, HsmError::ModuleLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/libpkcs11.so"), "{err}");
}

#[test]
fn bad_public_keys_are_refused_clearly() {
    let pkcs11 = open(TOKEN);
    let software = SoftwareSource::new_insecure_for_development();
    let sources: [&dyn KeyMaterialSource; 2] = [&pkcs11, &software];
    let kms2048 = kms(WrappingKeySpec::Rsa2048);
    for source in sources {
        let alg = WrappingAlgorithm::RsaesOaepSha1;
        let err = source.generate_and_wrap(b"definitely not DER", WrappingKeySpec::Rsa2048, alg).unwrap_err();
        assert!(matches!(err, HsmError::InvalidPublicKey { .. }), "{err:?}");
        assert!(err.to_string().contains("DER SubjectPublicKeyInfo"), "{err}");

        // A base64 copy of the right key is the likely mistake: say so, do not echo it.
        let b64 = base64::engine::general_purpose::STANDARD.encode(&kms2048.public_der);
        let err = source.generate_and_wrap(b64.as_bytes(), WrappingKeySpec::Rsa2048, alg).unwrap_err();
        assert!(matches!(err, HsmError::InvalidPublicKey { .. }), "{err:?}");
        assert!(!err.to_string().contains(&b64[..16]), "{err}");

        let err = source.generate_and_wrap(&kms2048.public_der, WrappingKeySpec::Rsa4096, alg).unwrap_err();
        assert!(matches!(err, HsmError::PublicKeySizeMismatch { actual_bits: 2048, .. }), "{err:?}");
        assert!(err.to_string().contains("2048-bit") && err.to_string().contains("RSA_4096"), "{err}");
    }
}

#[test]
fn software_round_trip_all_four_algorithms() {
    let source = SoftwareSource::new_insecure_for_development();
    assert_eq!(source.supported_algorithms().unwrap(), WrappingAlgorithm::PREFERENCE);
    assert_eq!(source.choose(None).unwrap(), WrappingAlgorithm::RsaAesKeyWrapSha256);
    for spec in [WrappingKeySpec::Rsa2048, WrappingKeySpec::Rsa4096] {
        let kms = kms(spec);
        for algorithm in WrappingAlgorithm::PREFERENCE {
            let checked = source.generate_and_wrap_with_check_block(&kms.public_der, spec, algorithm).unwrap();
            assert_round_trip(kms, &checked, algorithm);
            let plain = source.generate_and_wrap(&kms.public_der, spec, algorithm).unwrap();
            assert_eq!(kms_unwrap(kms, &plain).len(), KEY_MATERIAL_LEN);
        }
    }
}

/// Every rendering a log line could contain, of the blob and of every error, is free of the
/// blob's bytes (hex or base64) and of the PIN.
#[test]
fn nothing_secret_is_ever_formatted() {
    let kms = kms(WrappingKeySpec::Rsa2048);
    let pkcs11 = open(TOKEN);
    let mut wrapped: Vec<WrappedKeyMaterial> = pkcs11
        .supported_algorithms()
        .unwrap()
        .into_iter()
        .map(|a| pkcs11.generate_and_wrap(&kms.public_der, kms.spec, a).unwrap())
        .collect();
    let software = SoftwareSource::new_insecure_for_development();
    wrapped.extend(
        WrappingAlgorithm::PREFERENCE.map(|a| software.generate_and_wrap(&kms.public_der, kms.spec, a).unwrap()),
    );

    let errors = [
        Pkcs11Source::open(&softhsm().module, WRONG_PIN_TOKEN, &HsmPin::new("wrong-pin-55120")).unwrap_err(),
        Pkcs11Source::open(&softhsm().module, "no-such-token", &HsmPin::new(PIN)).unwrap_err(),
        Pkcs11Source::open("/nonexistent/libpkcs11.so", TOKEN, &HsmPin::new(PIN)).unwrap_err(),
        pkcs11.choose(Some(WrappingAlgorithm::RsaesOaepSha256)).unwrap_err(),
        pkcs11.generate_and_wrap(b"junk", kms.spec, WrappingAlgorithm::RsaesOaepSha1).unwrap_err(),
        pkcs11
            .generate_and_wrap(&kms.public_der, WrappingKeySpec::Rsa3072, WrappingAlgorithm::RsaesOaepSha1)
            .unwrap_err(),
        "RSAES_PKCS1_V1_5".parse::<WrappingAlgorithm>().unwrap_err(),
    ];

    let mut rendered: Vec<String> = errors.iter().flat_map(|e| [e.to_string(), format!("{e:?}")]).collect();
    rendered.extend(wrapped.iter().flat_map(|w| [w.to_string(), format!("{w:?}")]));
    rendered.push(format!("{:?}", HsmPin::new(PIN)));
    rendered.push(format!("{pkcs11:?}"));

    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forbidden = vec![PIN.to_owned(), "wrong-pin-55120".to_owned()];
    for w in &wrapped {
        let bytes = w.as_bytes();
        forbidden.extend([
            hex::encode(&bytes[..8]),
            hex::encode_upper(&bytes[..8]),
            b64.encode(&bytes[..12]),
            format!("{:?}", &bytes[..4]),
        ]);
    }
    for text in &rendered {
        for secret in &forbidden {
            assert!(!text.contains(secret.as_str()), "{text:?} contains {secret:?}");
        }
    }
    assert!(format!("{:?}", wrapped[0]).contains(&format!("len: {}", wrapped[0].len())));
}

#[test]
fn kms_names_round_trip() {
    for a in WrappingAlgorithm::PREFERENCE {
        assert_eq!(a.as_str().parse::<WrappingAlgorithm>().unwrap(), a);
        assert_eq!(a.to_string(), a.as_str());
    }
    for s in WrappingKeySpec::ALL {
        assert_eq!(s.as_str().parse::<WrappingKeySpec>().unwrap(), s);
    }
    assert_eq!(WrappingAlgorithm::RsaAesKeyWrapSha256.as_str(), "RSA_AES_KEY_WRAP_SHA_256");
    assert_eq!(WrappingAlgorithm::RsaesOaepSha1.as_str(), "RSAES_OAEP_SHA_1");
    assert!("rsaes_oaep_sha_1".parse::<WrappingAlgorithm>().is_err(), "KMS names are case-sensitive");
    assert!("RSA_1024".parse::<WrappingKeySpec>().is_err());
}

/// `choose` on its own: preference order, pinning, and the empty case.
#[test]
fn choose_prefers_the_strongest_supported() {
    struct Fixed(Vec<WrappingAlgorithm>);
    impl KeyMaterialSource for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn supported_algorithms(&self) -> Result<Vec<WrappingAlgorithm>, HsmError> {
            Ok(self.0.clone())
        }
        fn generate_and_wrap(
            &self,
            _: &[u8],
            _: WrappingKeySpec,
            _: WrappingAlgorithm,
        ) -> Result<WrappedKeyMaterial, HsmError> {
            unreachable!()
        }
    }
    use WrappingAlgorithm::*;
    assert_eq!(Fixed(vec![RsaesOaepSha1, RsaesOaepSha256]).choose(None).unwrap(), RsaesOaepSha256);
    assert_eq!(Fixed(vec![RsaesOaepSha256, RsaAesKeyWrapSha1]).choose(None).unwrap(), RsaesOaepSha256);
    assert_eq!(Fixed(vec![RsaesOaepSha1, RsaAesKeyWrapSha1]).choose(None).unwrap(), RsaAesKeyWrapSha1);
    assert_eq!(Fixed(WrappingAlgorithm::PREFERENCE.to_vec()).choose(Some(RsaesOaepSha1)).unwrap(), RsaesOaepSha1);
    assert!(matches!(Fixed(vec![]).choose(None), Err(HsmError::NoSupportedAlgorithm { .. })));
}

/// Custody: kept material is a persistent, sensitive token object, found again by its label
/// (key ARN) and id (KMS material id), and every wrap of it carries the same material.
#[test]
fn pkcs11_kept_material_is_a_labelled_token_object_wrapped_the_same_every_time() {
    let source = open(TOKEN);
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/0000aaaa-custody-test";
    let kms = kms(WrappingKeySpec::Rsa2048);
    let (kept, reused) = source.keep_new_material(arn).unwrap();
    assert!(!reused && kept.key_material_id.is_none(), "{kept}");
    // A second run before ImportKeyMaterial finds the same pending object, never a second one.
    let (again, reused) = source.keep_new_material(arn).unwrap();
    assert!(reused && again == kept);
    assert_eq!(source.kept_materials(arn).unwrap().len(), 1);

    let first = source.wrap_kept(&kept, &kms.public_der, kms.spec, WrappingAlgorithm::RsaesOaepSha1).unwrap();
    let material = kms_unwrap(kms, &first);
    let named = source.name_kept(arn, &"c".repeat(64)).unwrap();
    assert_eq!(named.key_material_id.as_deref(), Some("c".repeat(64).as_str()));
    // Naming is idempotent; the object is now found by the material id.
    assert_eq!(source.name_kept(arn, &"c".repeat(64)).unwrap(), named);
    let found = source.find_kept(arn, &"c".repeat(64)).unwrap().expect("found by CKA_ID");
    for algorithm in [WrappingAlgorithm::RsaesOaepSha1, WrappingAlgorithm::RsaAesKeyWrapSha1] {
        let again = source.wrap_kept(&found, &kms.public_der, kms.spec, algorithm).unwrap();
        assert_eq!(*kms_unwrap(kms, &again), *material, "{algorithm}: a different material was wrapped");
    }
    // Other material of the same key is not found; a key without kept material has none.
    assert!(source.find_kept(arn, &"d".repeat(64)).unwrap().is_none());
    assert!(source.name_kept("arn:aws:kms:eu-west-1:111122223333:key/none", "x").is_err());

    source.with_session(|session| {
        let handles =
            session.find_objects(&[Attribute::Token(true), Attribute::Label(arn.as_bytes().to_vec())]).unwrap();
        assert_eq!(handles.len(), 1);
        let attrs = session
            .get_attributes(
                handles[0],
                &[AttributeType::Token, AttributeType::Sensitive, AttributeType::Extractable, AttributeType::Id],
            )
            .unwrap();
        assert!(attrs.contains(&Attribute::Token(true)) && attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Id("c".repeat(64).into_bytes())), "{attrs:?}");
        ensure_sensitive(session, handles[0], TOKEN).expect("CKA_VALUE is not readable");
        let info = session.get_attribute_info(handles[0], &[AttributeType::Value]).unwrap();
        assert!(!matches!(info.as_slice(), [AttributeInfo::Available(_)]), "{info:?}");
    });
    // SoftHSM 2.6 gives CKA_TRUSTED to the security officer only.
    assert_eq!(source.wrap_with_trusted(), WrapWithTrusted::Unsupported);
}

#[test]
fn software_source_keeps_nothing_and_says_so() {
    let source = SoftwareSource::new_insecure_for_development();
    assert!(!source.keeps_material());
    let err = source.keep_new_material("arn:aws:kms:eu-west-1:111122223333:key/k").unwrap_err();
    assert!(err.to_string().contains("cannot keep key material"), "{err}");
}
