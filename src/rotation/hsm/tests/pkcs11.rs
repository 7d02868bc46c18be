//! The PKCS#11 source on a real SoftHSM2 token: what it probes, that every wrap opens to the
//! material it generated, that nothing is left behind or readable, clear login errors, and
//! custody of kept material (named at creation, never changed).

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

/// Custody: kept material is a persistent, sensitive token object, named at creation (label =
/// key ARN, CKA_ID = its own id) and never changed: the token refuses any change to it, as AWS
/// CloudHSM refuses a change of CKA_ID. Every wrap of it carries the same material.
#[test]
fn pkcs11_kept_material_is_named_at_creation_and_wrapped_the_same_every_time() {
    let source = open(TOKEN);
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/0000aaaa-custody-test";
    let kms = kms(WrappingKeySpec::Rsa2048);
    let (kept, reused) = source.keep_new_material(arn, "krg-00000000000000000000000000000001").unwrap();
    assert!(!reused && kept.object_id == "krg-00000000000000000000000000000001" && kept.key_material_id.is_none());
    // A second run with the same id (a resumed rotation) gets the same object, never a second.
    let (again, reused) = source.keep_new_material(arn, &kept.object_id).unwrap();
    assert!(reused && again == kept);
    // Another id is another material.
    let (other, _) = source.keep_new_material(arn, "krg-00000000000000000000000000000002").unwrap();
    assert_eq!(source.kept_materials(arn).unwrap().len(), 2);

    let first = source.wrap_kept(&kept, &kms.public_der, kms.spec, WrappingAlgorithm::RsaesOaepSha1).unwrap();
    let material = kms_unwrap(kms, &first);
    for algorithm in [WrappingAlgorithm::RsaesOaepSha1, WrappingAlgorithm::RsaAesKeyWrapSha1] {
        let again = source.wrap_kept(&kept, &kms.public_der, kms.spec, algorithm).unwrap();
        assert_eq!(*kms_unwrap(kms, &again), *material, "{algorithm}: a different material was wrapped");
    }
    let second = source.wrap_kept(&other, &kms.public_der, kms.spec, WrappingAlgorithm::RsaesOaepSha1).unwrap();
    assert_ne!(*kms_unwrap(kms, &second), *material);
    // An object this login does not see is "not visible", never silently another one.
    let hidden = KeptMaterial { object_id: "krg-ffffffffffffffffffffffffffffffff".into(), ..kept.clone() };
    let err = source.wrap_kept(&hidden, &kms.public_der, kms.spec, WrappingAlgorithm::RsaesOaepSha1).unwrap_err();
    assert!(
        matches!(err, HsmError::NotVisible { .. }) && err.to_string().contains(crate::rotation::hsm::NOT_VISIBLE),
        "{err}"
    );

    source.with_session(|session| {
        let handles = session
            .find_objects(&[
                Attribute::Token(true),
                Attribute::Label(arn.as_bytes().to_vec()),
                Attribute::Id(kept.object_id.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(handles.len(), 1);
        let attrs = session
            .get_attributes(
                handles[0],
                &[
                    AttributeType::Token,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Modifiable,
                ],
            )
            .unwrap();
        assert!(attrs.contains(&Attribute::Token(true)) && attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Modifiable(false)), "{attrs:?}");
        // The token refuses to rename it (SoftHSM 2.6: CKR_ACTION_PROHIBITED for an object that
        // is not modifiable; CloudHSM: CKA_ID is not modifiable at all).
        let err = session.update_attributes(handles[0], &[Attribute::Id(b"renamed".to_vec())]).unwrap_err();
        assert!(
            matches!(
                err,
                cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::ActionProhibited | cryptoki::error::RvError::AttributeReadOnly,
                    _
                )
            ),
            "{err:?}"
        );
        ensure_sensitive(session, handles[0], TOKEN).expect("CKA_VALUE is not readable");
        let info = session.get_attribute_info(handles[0], &[AttributeType::Value]).unwrap();
        assert!(!matches!(info.as_slice(), [AttributeInfo::Available(_)]), "{info:?}");
    });
    // SoftHSM 2.6 gives CKA_TRUSTED to the security officer only.
    assert_eq!(source.wrap_with_trusted(), WrapWithTrusted::Unsupported);
}

#[test]
fn a_wrap_the_token_refuses_to_this_user_is_not_visible_not_missing() {
    use cryptoki::error::RvError;
    for rv in [RvError::KeyFunctionNotPermitted, RvError::ObjectHandleInvalid, RvError::KeyHandleInvalid] {
        assert!(crate::rotation::hsm::pkcs11::refused_to_this_user(rv), "{rv:?}");
    }
    assert!(!crate::rotation::hsm::pkcs11::refused_to_this_user(RvError::MechanismInvalid));
}
