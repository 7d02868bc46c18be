//! Payload first, then settings; the PIN comes only from Secrets Manager.

use super::*;

/// Payload first, then settings (issue 13): a bad payload is reported as such even when the
/// function is misconfigured. None of these reach AWS.
#[tokio::test]
async fn payload_is_validated_before_settings_and_the_pin_comes_only_from_secrets_manager() {
    let aws = Aws::new(sdk_config("http://127.0.0.1:9", static_creds()).await);
    let empty = RemediationSettings::from_lookup(|_| None);
    for (bad, says) in [
        (json!("alias/x"), "JSON object"),
        (json!({}), "keyId"),
        (json!({"keyId": "alias/x", "extra": 1}), "unknown field"),
        (json!({"keyId": "alias/x", "strategy": "sideways"}), "strategy"),
        (json!({"keyId": "alias/x", "action": "delete"}), "action"),
        (json!({"keyId": "alias/x", "resourceType": "ec2"}), "resourceType"),
        (json!({"keyId": "alias/x", "ruleParameters": "{\"maxKeyAgeDays\":\"soon\"}"}), "maxKeyAgeDays"),
        (json!({"keyId": "alias/x", "ruleParameters": {"maxKeyAgeDays": "30"}}), "ruleParameters"),
        (json!({"keyId": "alias/x", "keyMaterialId": "m"}), "reimport"),
        (json!({"keyId": "not a key"}), "keyId"),
        (json!({"keyId": ""}), "resourceId"),
    ] {
        let e = remediate(&aws, &empty, bad.clone()).await.unwrap_err();
        assert!(matches!(e, RemediationError::MalformedPayload(_)), "{bad}: {e}");
        assert_eq!(e.error_type(), "InvalidRequest");
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
    let good = payload("alias/x", "bucket");
    let e = remediate(&aws, &empty, good.clone()).await.unwrap_err();
    assert!(matches!(e, RemediationError::InvalidSettings(ref m) if m.contains("KRG_PKCS11_MODULE")), "{e}");

    // The PIN: only from Secrets Manager, never from the environment.
    let no_secret = {
        let mut m = vars(&[]);
        m.remove("KRG_PIN_SECRET_ARN");
        RemediationSettings::from_lookup(move |n| m.get(n).cloned())
    };
    let e = remediate(&aws, &no_secret, good.clone()).await.unwrap_err();
    assert!(matches!(e, RemediationError::InvalidSettings(ref m) if m.contains("KRG_PIN_SECRET_ARN")), "{e}");
    let m = vars(&[("KRG_PKCS11_PIN", "123456")]);
    let env_pin = RemediationSettings::from_lookup(move |n| m.get(n).cloned());
    let e = remediate(&aws, &env_pin, good.clone()).await.unwrap_err();
    assert!(matches!(e, RemediationError::InvalidSettings(ref m) if m.contains("KRG_PKCS11_PIN")), "{e}");
    assert!(!e.to_string().contains("123456"), "{e}");
    let software = settings(&[("KRG_HSM", "software")]);
    assert!(matches!(remediate(&aws, &software, good.clone()).await, Err(RemediationError::InvalidSettings(_))));

    // Valid settings, still no AWS call: findings rotation cannot fix are skips (alias-swap
    // allowed here, so that the policy lets the request through to the finding check)…
    let ok = settings(&[]);
    let swappable = settings(&[("KRG_ALLOW_ALIAS_SWAP", "true")]);
    for (p, says) in [
        (
            json!({"keyId": "alias/prod", "resourceId": "db-1", "resourceType": "rds", "strategy": "alias-swap"}),
            "stores the key ARN",
        ),
        (json!({"keyId": "", "resourceId": "open-bucket", "resourceType": "s3"}), "no customer managed"),
        (json!({"keyId": "alias/aws/s3", "resourceId": "b", "resourceType": "s3"}), "AWS-managed"),
    ] {
        let v = remediate(&aws, &swappable, p.clone()).await.unwrap();
        assert_eq!(status(&v), "skipped", "{p}");
        assert!(v["reason"].as_str().unwrap().contains(says), "{p}: {v}");
    }
    // …alias-swap where it is not enabled is refused, and reimport reaches the rotation
    // module (which reads the key: there is none here).
    let swap = json!({"keyId": "alias/prod", "resourceType": "s3", "strategy": "alias-swap"});
    let e = remediate(&aws, &ok, swap).await.unwrap_err();
    assert!(matches!(e, RemediationError::Refused(ref m) if m.contains("KRG_ALLOW_ALIAS_SWAP")), "{e}");
    let reimport = json!({"action": "reimport", "keyId": "alias/prod", "keyMaterialId": "abc"});
    let e = remediate(&aws, &ok, reimport).await.unwrap_err();
    assert!(matches!(e, RemediationError::Rotation(_)) && e.to_string().contains("DescribeKey"), "{e}");
}
