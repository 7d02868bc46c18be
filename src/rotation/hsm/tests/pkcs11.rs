//! The PKCS#11 source on a real SoftHSM2 token: what it probes, that every wrap opens to the
//! material it generated, that nothing is left behind or readable, clear login errors, and
//! custody of kept material.

use super::*;

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
