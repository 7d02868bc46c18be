//! What every key material source shares: refusing bad KMS public keys, never formatting a
//! secret, KMS names, the choice of algorithm; and the software source, which keeps nothing.

use super::*;

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

#[test]
fn software_source_keeps_nothing_and_says_so() {
    let source = SoftwareSource::new_insecure_for_development();
    assert!(!source.keeps_material());
    let err = source.keep_new_material("arn:aws:kms:eu-west-1:111122223333:key/k", "krg-1").unwrap_err();
    assert!(err.to_string().contains("cannot keep key material"), "{err}");
}
