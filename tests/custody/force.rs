//! `rotate --force` skips the "does it need rotating?" gate, never the lock (issue 19): an
//! operator's forced run must not overlap the Lambda's rotation of the same key.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_force_skips_the_need_check_but_never_the_lock() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let arn = external_key(&aws, "forced").await;
    Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
    let before = describe(&aws, &arn).await.current_key_material_id().unwrap().to_string();
    let _ = softhsm(); // makes the token and sets SOFTHSM2_CONF for the child
    let force = || {
        let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(["rotate", "--key", "alias/forced", "--force"])
            .args(["--wrapping-algorithm", "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_2048"])
            .args(["--hsm", "pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "rotation-tests"])
            .env("KRG_PKCS11_PIN", SOFTHSM_PIN)
            .env("AWS_ENDPOINT_URL", &ls.endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        println!("$ kms-rotation-guard rotate --key alias/forced --force ...\n{text}");
        (out.status.code(), text)
    };
    // The Lambda is rotating this key right now: it holds the claim.
    let claim = format!("lambda-7f3a {}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
    let tag = aws_sdk_kms::types::Tag::builder().tag_key(kms_rotation_guard::remediation::CLAIM_TAG).tag_value(&claim);
    aws.kms().tag_resource().key_id(&arn).tags(tag.build().unwrap()).send().await.unwrap();
    let (code, text) = force();
    assert_eq!(code, Some(1), "a refusal the operator must act on: {text}");
    assert!(text.contains("not rotated") && text.contains("lambda-7f3a"), "{text}");
    assert_eq!(describe(&aws, &arn).await.current_key_material_id(), Some(before.as_str()), "nothing imported");

    // Once the other rotation is done, --force rotates (the gate would not: the key is new)
    // and leaves no claim behind.
    aws.kms().untag_resource().key_id(&arn).tag_keys(kms_rotation_guard::remediation::CLAIM_TAG).send().await.unwrap();
    let (code, text) = force();
    assert_eq!(code, Some(0), "{text}");
    assert_ne!(describe(&aws, &arn).await.current_key_material_id(), Some(before.as_str()));
    let tags = aws.kms().list_resource_tags().key_id(&arn).send().await.unwrap();
    assert!(tags.tags().iter().all(|t| t.tag_key() != kms_rotation_guard::remediation::CLAIM_TAG), "{tags:?}");
}
