//! The remediation path, called in-process as the Lambda calls it: `lambda::remediate`
//! against LocalStack's KMS (real BYOK import) with key material from SoftHSM2.
//!
//! Config starts one remediation per NON_COMPLIANT resource, in parallel. A key has 25
//! on-demand rotations for life, so 30 resources on one stale key must rotate it once.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kms::types::{OriginType, Tag};
use chrono::Utc;
use common::*;
use futures_util::StreamExt;
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::lambda::{remediate, RemediationSettings};
use kms_rotation_guard::remediation::{RemediationError, CLAIM_TAG};
use kms_rotation_guard::rotation::hsm::{WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{RotationRequest, Rotator, PENDING_TAG};
use serde_json::{json, Value};

/// The function's environment as security-account.yaml sets it. The PIN secret is never
/// read here: the SoftHSM session is handed in. LocalStack refuses RSA_AES_KEY_WRAP_SHA_1
/// (docs/emulators.md), so the wrapping algorithm is pinned as an operator can.
fn vars(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("KRG_HSM", "pkcs11"),
        ("KRG_PKCS11_MODULE", SOFTHSM_MODULE),
        ("KRG_TOKEN_LABEL", "rotation-tests"),
        ("KRG_PIN_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:000000000000:secret:hsm-pin-AbCdEf"),
        ("KRG_WRAPPING_ALGORITHM", "RSAES_OAEP_SHA_1"),
        ("KRG_WRAPPING_KEY_SPEC", "RSA_2048"),
        ("KRG_CLAIM_SETTLE_MS", "300"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn settings(extra: &[(&str, &str)]) -> RemediationSettings {
    let m = vars(extra);
    RemediationSettings::from_lookup(move |n| m.get(n).cloned()).with_source(softhsm())
}

fn payload(key: &str, resource: &str) -> Value {
    json!({
        "keyId": key,
        "resourceId": resource,
        "resourceType": "s3",
        "strategy": "in-place",
        "ruleParameters": "{\"maxKeyAgeDays\":\"365\",\"expiryWarningDays\":\"30\"}"
    })
}

async fn kms_at(ls: &LocalStack) -> (Aws, CallCounter) {
    let counter = CallCounter::default();
    (Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_counter(counter.clone()), counter)
}

/// An EXTERNAL key with an alias and its first material (imported from SoftHSM), whose
/// rotation tag says it was rotated `age_days` ago.
async fn byok_key(aws: &Aws, alias: &str, age_days: i64) -> String {
    let out = aws.kms().create_key().origin(OriginType::External).send().await.unwrap();
    let id = out.key_metadata().unwrap().key_id().to_string();
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&id).send().await.unwrap();
    let req = RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(&id)
    };
    Rotator::new(aws, softhsm()).rotate(&req).await.unwrap();
    let date = ymd(days_from_now(-age_days));
    tag(aws, &id, "LastRotationDate", &date).await;
    id
}

async fn tag(aws: &Aws, key: &str, k: &str, v: &str) {
    let t = Tag::builder().tag_key(k).tag_value(v).build().unwrap();
    aws.kms().tag_resource().key_id(key).tags(t).send().await.unwrap();
}

async fn tags(aws: &Aws, key: &str) -> BTreeMap<String, String> {
    let out = aws.kms().list_resource_tags().key_id(key).send().await.unwrap();
    out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect()
}

fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("?")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_remediations_for_resources_sharing_one_stale_key_rotate_it_once() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let id = byok_key(&aws, "shared-s3", 400).await;
    let material_before = aws
        .kms()
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .current_key_material_id
        .clone();
    let settings = settings(&[]);
    counter.reset();
    // Config runs remediations in parallel: three waves of ten concurrent invocations, the
    // first while the key is stale, the next two after its rotation.
    let mut results: Vec<Result<Value, RemediationError>> = Vec::new();
    for wave in 0..3 {
        let batch: Vec<_> = futures_util::stream::iter(0..10)
            .map(|i| {
                let (aws, settings) = (&aws, &settings);
                let bucket = format!("bucket-{wave}{i}");
                async move { remediate(aws, settings, payload("alias/shared-s3", &bucket)).await }
            })
            .buffer_unordered(10)
            .collect()
            .await;
        results.extend(batch);
    }
    let results: Vec<Value> = results.into_iter().map(|r| r.expect("a refusal is a success")).collect();
    let rotated: Vec<&Value> = results.iter().filter(|v| status(v) == "rotated").collect();
    let skipped: Vec<&Value> = results.iter().filter(|v| status(v) == "skipped").collect();
    assert_eq!((rotated.len(), skipped.len()), (1, 29), "{results:#?}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 1, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.ImportKeyMaterial"), 1, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.GetParametersForImport"), 1, "{:?}", counter.snapshot());
    let (mut raced, mut fresh) = (0, 0);
    for s in &skipped {
        let reason = s["reason"].as_str().unwrap();
        if reason.contains("another remediation") {
            raced += 1;
        } else if reason.contains("does not need rotating") {
            fresh += 1;
        } else {
            panic!("unexpected skip: {reason}");
        }
    }
    // The first wave ran while the key was still stale: the claim, not the tag, held it off.
    assert_eq!((raced, fresh), (9, 20), "skipped on the claim {raced}, as fresh {fresh}");
    eprintln!("30 remediations: 1 rotated, {raced} skipped on the claim, {fresh} skipped as fresh");
    let record = rotated[0];
    assert_eq!(record["strategy"], "in-place");
    assert!(record["reason"].as_str().unwrap().contains("400 days ago"), "{record}");
    let after = aws.kms().describe_key().key_id(&id).send().await.unwrap();
    assert_ne!(after.key_metadata().unwrap().current_key_material_id, material_before);
    let t = tags(&aws, &id).await;
    assert!(t["LastRotationDate"].starts_with(&Utc::now().format("%Y-%m-%d").to_string()), "{t:?}");
    assert!(!t.contains_key(CLAIM_TAG) && !t.contains_key(PENDING_TAG), "claim and pending tags are gone: {t:?}");

    // A later wave finds the key fresh, without claiming it.
    counter.reset();
    let v = remediate(&aws, &settings, payload(&id, "bucket-late")).await.unwrap();
    assert_eq!(status(&v), "skipped", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("does not need rotating"), "{v}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand") + counter.get("kms.TagResource"), 0, "{:?}", counter.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_claimed_and_unsafe_keys_are_not_rotated() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let settings = settings(&[]);

    // A fresh key: skipped with the rule's own words, and nothing written.
    let fresh = byok_key(&aws, "fresh-s3", 20).await;
    counter.reset();
    let v = remediate(&aws, &settings, payload("alias/fresh-s3", "bucket-a")).await.unwrap();
    assert_eq!(status(&v), "skipped", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("does not need rotating") && reason.contains("20 days ago"), "{reason}");
    for op in ["kms.RotateKeyOnDemand", "kms.ImportKeyMaterial", "kms.GetParametersForImport", "kms.TagResource"] {
        assert_eq!(counter.get(op), 0, "{op}: {:?}", counter.snapshot());
    }
    assert!(tags(&aws, &fresh).await.contains_key("LastRotationDate"));

    // A stale key another invocation is rotating: left alone while the claim is live…
    let stale = byok_key(&aws, "claimed-s3", 400).await;
    let since = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    tag(&aws, &stale, CLAIM_TAG, &format!("other-invocation {since}")).await;
    counter.reset();
    let v = remediate(&aws, &settings, payload(&stale, "bucket-b")).await.unwrap();
    assert_eq!(status(&v), "skipped", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("other-invocation"), "{v}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 0);
    // …and taken over once the claim is older than a Lambda can live (15 minutes).
    let old = (Utc::now() - chrono::Duration::minutes(20)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    tag(&aws, &stale, CLAIM_TAG, &format!("other-invocation {old}")).await;
    let v = remediate(&aws, &settings, payload(&stale, "bucket-b")).await.unwrap();
    assert_eq!(status(&v), "rotated", "{v}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 1);
    assert!(!tags(&aws, &stale).await.contains_key(CLAIM_TAG));

    // Unsafe keys are errors (Config shows them), not skips.
    let doomed = byok_key(&aws, "doomed-s3", 400).await;
    aws.kms().schedule_key_deletion().key_id(&doomed).pending_window_in_days(7).send().await.unwrap();
    let e = remediate(&aws, &settings, payload("alias/doomed-s3", "bucket-c")).await.unwrap_err();
    assert_eq!(e.error_type(), "RemediationRefused", "{e}");
    assert!(e.to_string().contains("pending deletion"), "{e}");
    // With a guard tag configured, an unmarked key is refused before anything is written.
    let guarded = self::settings(&[("KRG_KEY_TAG_VALUE", "rotatable")]);
    let unmarked = byok_key(&aws, "unmarked-s3", 400).await;
    counter.reset();
    let e = remediate(&aws, &guarded, payload(&unmarked, "bucket-e")).await.unwrap_err();
    assert!(matches!(e, RemediationError::Refused(ref m) if m.contains("kms-rotation-guard=rotatable")), "{e}");
    assert_eq!(counter.get("kms.TagResource"), 0, "{:?}", counter.snapshot());
    let e = remediate(&aws, &settings, payload("alias/no-such-key", "bucket-d")).await.unwrap_err();
    assert!(matches!(e, RemediationError::Refused(ref m) if m.contains("not found")), "{e}");
}

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

    // Valid settings, still no AWS call: findings rotation cannot fix are skips…
    let ok = settings(&[]);
    for (p, says) in [
        (
            json!({"keyId": "alias/prod", "resourceId": "db-1", "resourceType": "rds", "strategy": "alias-swap"}),
            "stores the key ARN",
        ),
        (json!({"keyId": "", "resourceId": "open-bucket", "resourceType": "s3"}), "no customer managed"),
        (json!({"keyId": "alias/aws/s3", "resourceId": "b", "resourceType": "s3"}), "AWS-managed"),
    ] {
        let v = remediate(&aws, &ok, p.clone()).await.unwrap();
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

/// The operator's CLI applies the same gate; `--force` is the only way past it. The PIN
/// comes through `--pin-stdin` (the zeroized buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotate_applies_the_gate_unless_forced() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let id = byok_key(&aws, "cli-s3", 20).await; // also sets SOFTHSM2_CONF for the child
    let before = material(&aws, &id).await;
    let rotate = |extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(["rotate", "--key", "alias/cli-s3", "--hsm", "pkcs11", "--pkcs11-module", SOFTHSM_MODULE])
            .args(["--token-label", "rotation-tests", "--pin-stdin", "--wrapping-algorithm", "RSAES_OAEP_SHA_1"])
            .args(["--wrapping-key-spec", "RSA_2048"])
            .args(extra)
            .envs([
                ("AWS_ENDPOINT_URL", ls.endpoint.as_str()),
                ("AWS_REGION", REGION),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONFIG_FILE", "/dev/null"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ])
            .env_remove("KRG_PKCS11_PIN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{SOFTHSM_PIN}").unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert!(!stdout.contains(SOFTHSM_PIN) && !stderr.contains(SOFTHSM_PIN));
        stdout.trim().to_string()
    };
    let json = |s: String| serde_json::from_str::<Value>(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
    let v = json(rotate(&[]));
    assert_eq!(status(&v), "skipped", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("does not need rotating"), "{v}");
    assert_eq!(material(&aws, &id).await, before, "a fresh key is not rotated without --force");
    // A stricter rule makes the same key due.
    let plan = rotate(&["--rule-parameters", r#"{"maxKeyAgeDays":"15","expiryWarningDays":"0"}"#, "--dry-run"]);
    assert!(plan.contains("strategy:   in-place") && plan.contains("quota:"), "a due key is planned: {plan}");
    assert_eq!(material(&aws, &id).await, before, "--dry-run changes nothing");
    let v = json(rotate(&["--force"]));
    assert_eq!(v["strategy"], "in-place", "{v}");
    assert_ne!(material(&aws, &id).await, before, "--force rotates");
}

async fn material(aws: &Aws, id: &str) -> Option<String> {
    aws.kms().describe_key().key_id(id).send().await.unwrap().key_metadata().unwrap().current_key_material_id.clone()
}

/// A KMS endpoint answering in the API reference's shapes, for what LocalStack lacks:
/// ListKeyRotations (with RotationType). One Enabled EXTERNAL key whose tag says 400 days;
/// `rotations` is the ListKeyRotations reply, or `None` for AWS's AccessDeniedException.
/// Returns the endpoint and the operations it saw.
fn fake_kms(rotations: Option<Value>) -> (String, common::Recorded) {
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let created = (Utc::now() - chrono::Duration::days(800)).timestamp();
    let stale = ymd(days_from_now(-400));
    common::fake_json_endpoint(move |op, _| match (op, &rotations) {
        ("describekey", _) => (
            200,
            json!({"KeyMetadata": {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "Arn": arn,
                "AWSAccountId": "111122223333", "KeyState": "Enabled", "Origin": "EXTERNAL",
                "KeyManager": "CUSTOMER", "Enabled": true, "CreationDate": created,
                "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "MultiRegion": false,
                "CurrentKeyMaterialId": "m2"}}),
        ),
        ("listresourcetags", _) => {
            (200, json!({"Tags": [{"TagKey": "LastRotationDate", "TagValue": stale}], "Truncated": false}))
        }
        ("listkeyrotations", Some(r)) => (200, r.clone()),
        ("listkeyrotations", None) => (
            400,
            json!({"__type": "AccessDeniedException", "message": format!(
                "User: arn:aws:sts::111122223333:assumed-role/rotation/x is not authorized to perform: kms:ListKeyRotations on resource: {arn}")}),
        ),
        _ => (400, json!({"__type": "UnsupportedOperationException", "message": "not in this fake"})),
    })
}

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
    // No HSM source: a skip must not need one.
    let m = vars(&[]);
    let settings = RemediationSettings::from_lookup(move |n| m.get(n).cloned());
    let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    // Verify the tag against KMS off, so that the 24-hour check alone decides.
    let mut p = payload(key, "bucket");
    p["ruleParameters"] = json!("{\"verifyTagAgainstKms\":\"false\"}");

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
