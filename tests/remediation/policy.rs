//! The security account's policy: the 24-hour ON_DEMAND check, the operator's floor, multi-Region keys.

use super::*;

/// The 24-hour ON_DEMAND check, through ListKeyRotations as AWS answers it (LocalStack has
/// no ListKeyRotations): a stale key rotated on demand an hour ago is skipped, without a
/// write and without the HSM; when the role may not list rotations, the remediation fails
/// with AccessDenied rather than guess.
#[tokio::test]
async fn an_on_demand_rotation_in_the_last_24_hours_is_read_from_kms_and_blocks_another() {
    let hour_ago = (Utc::now() - chrono::Duration::hours(1)).timestamp();
    let first = (Utc::now() - chrono::Duration::days(800)).timestamp();
    let listing = json!({"Rotations": [
        {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "KeyMaterialId": "m1", "ImportState": "IMPORTED",
         "KeyMaterialState": "NON_CURRENT", "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "RotationDate": first},
        {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "KeyMaterialId": "m2", "ImportState": "IMPORTED",
         "KeyMaterialState": "CURRENT", "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "RotationDate": hour_ago,
         "RotationType": "ON_DEMAND"}
    ], "Truncated": false});
    // No HSM source: a skip must not need one. Verify the tag against KMS off (the security
    // account's policy), so that the 24-hour check alone decides.
    let m = vars(&[("KRG_VERIFY_TAG_AGAINST_KMS", "false")]);
    let settings = RemediationSettings::from_lookup(move |n| m.get(n).cloned());
    let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let p = payload(key, "bucket");

    let (endpoint, seen) = fake_kms(Some(listing));
    let aws = Aws::new(sdk_config(&endpoint, static_creds()).await);
    let v = remediate(&aws, &settings, p.clone()).await.unwrap();
    assert_eq!(status(&v), "skipped", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("rotated on demand"), "{v}");
    let ops: Vec<String> = seen.lock().unwrap().iter().map(|(op, _)| op.clone()).collect();
    assert!(
        ops.iter().all(|o| ["describekey", "listresourcetags", "listkeyrotations"].contains(&o.as_str())),
        "{ops:?}"
    );

    let (endpoint, _) = fake_kms(None);
    let aws = Aws::new(sdk_config(&endpoint, static_creds()).await);
    let e = remediate(&aws, &settings, p).await.unwrap_err();
    assert_eq!(e.error_type(), "AccessDenied", "{e}");
    assert!(e.to_string().contains("kms:ListKeyRotations"), "{e}");
}

/// The operator (a direct invocation, possible only inside the security account) is held to
/// the policy's floor too (forcing is the CLI's), and a policy that contradicts itself stops
/// the function. (Re-import and alias-swap by an operator: `payload`'s test and
/// remediation::policy's unit tests.)
#[tokio::test]
async fn the_operator_is_held_to_the_floor_and_a_contradictory_policy_stops_the_function() {
    let aws = Aws::new(sdk_config("http://127.0.0.1:9", static_creds()).await);
    let closed = settings(&[]);
    let e = remediate(&aws, &closed, json!({"keyId": "alias/prod", "ruleParameters": "{\"maxKeyAgeDays\":\"1\"}"}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RemediationError::Refused(ref m) if m.contains("operator") && m.contains("MinRotationIntervalDays")),
        "{e}"
    );
    // A policy that contradicts itself stops the function: a configuration error.
    let wrong = settings(&[("KRG_MIN_ROTATION_INTERVAL_DAYS", "400")]);
    let e = remediate(&aws, &wrong, payload("alias/prod", "b")).await.unwrap_err();
    assert_eq!(e.error_type(), "ConfigurationError", "{e}");
    assert!(e.to_string().contains("KRG_MIN_ROTATION_INTERVAL_DAYS"), "{e}");
    // A direct call is never mistaken for the bus, nor a bus event for a direct call.
    let answered = answer(false, Err(RemediationError::Refused("x".into())));
    assert_eq!(answered.unwrap_err().class.as_str(), "RemediationRefused");
}

/// Multi-Region primaries go through the gate only where the function may reach their
/// replicas (KRG_ROTATE_MULTI_REGION, from security-account.yaml's RotateMultiRegionKeys,
/// which also grants those rights); the rotation's own plan refuses replicas.
#[tokio::test]
async fn multi_region_keys_pass_the_gate_only_where_the_multi_region_path_runs() {
    let stale = json!({"Rotations": [], "Truncated": false});
    let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for (allowed, expect) in [("false", "KRG_ROTATE_MULTI_REGION"), ("true", "")] {
        let (endpoint, _) = fake_kms_key(true, Some(stale.clone()));
        let counter = CallCounter::default();
        let aws = Aws::new(sdk_config(&endpoint, static_creds()).await).with_counter(counter.clone());
        // No HSM: a key that passes the gate stops at the PIN secret (a configuration this
        // test does not give), after the gate and before any write.
        let m = vars(&[("KRG_ROTATE_MULTI_REGION", allowed)]);
        let settings = RemediationSettings::from_lookup(move |n| m.get(n).cloned());
        let e = remediate(&aws, &settings, payload(key, "bucket")).await.unwrap_err();
        if expect.is_empty() {
            assert_ne!(e.error_type(), "RemediationRefused", "a due multi-Region primary passes the gate: {e}");
            assert!(e.to_string().contains("secretsmanager:GetSecretValue"), "stopped at the PIN, past the gate: {e}");
        } else {
            assert_eq!(e.error_type(), "RemediationRefused", "{e}");
            assert!(e.to_string().contains(expect) && e.to_string().contains("multi-Region"), "{e}");
        }
        assert_eq!(writes(&counter), 0, "{:?}", counter.snapshot());
    }
}
