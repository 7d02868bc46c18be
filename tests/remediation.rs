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
use kms_rotation_guard::lambda::{answer, remediate, RemediationSettings};
use kms_rotation_guard::remediation::{RemediationError, CLAIM_TAG, REQUEST_DETAIL_TYPE, WORKLOAD_SOURCE};
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
    fake_kms_key(false, rotations)
}

/// [`fake_kms`], with a multi-Region (primary) key when `multi_region`.
fn fake_kms_key(multi_region: bool, rotations: Option<Value>) -> (String, common::Recorded) {
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let created = (Utc::now() - chrono::Duration::days(800)).timestamp();
    let stale = ymd(days_from_now(-400));
    common::fake_json_endpoint(move |op, _| match (op, &rotations) {
        ("describekey", _) => (
            200,
            json!({"KeyMetadata": {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "Arn": arn,
                "AWSAccountId": "111122223333", "KeyState": "Enabled", "Origin": "EXTERNAL",
                "KeyManager": "CUSTOMER", "Enabled": true, "CreationDate": created,
                "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "MultiRegion": multi_region,
                "CurrentKeyMaterialId": "m2"}}),
        ),
        ("listresourcetags", _) => {
            (200, json!({"Tags": [{"TagKey": "LastRotationDate", "TagValue": stale}], "Truncated": false}))
        }
        ("listkeyrotations", Some(r)) => (200, r.clone()),
        // The key policy lets the workload account 444455556666 use the key.
        ("getkeypolicy", _) => {
            (200, json!({"PolicyName": "default", "Policy": used_by(&["444455556666"], "111122223333")}))
        }
        ("listgrants", _) => (200, json!({"Grants": [], "Truncated": false})),
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

// ---------------------------------------------------------------------------------------
// Issue 20: a workload account can only ask; the security account decides.

/// A key policy: the key's own account administers it, `users` may use it.
fn used_by(users: &[&str], own: &str) -> String {
    let users: Vec<String> = users.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect();
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{own}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Workloads", "Effect": "Allow", "Principal": {"AWS": users},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"], "Resource": "*"}
    ]})
    .to_string()
}

/// A workload's request as the request rule delivers it: EventBridge's envelope, whose
/// `account` EventBridge sets, around the request the workload's document wrote.
fn bus_event(account: &str, detail: Value) -> Value {
    json!({"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": REQUEST_DETAIL_TYPE,
           "source": WORKLOAD_SOURCE, "account": account, "time": "2026-12-05T10:00:00Z", "region": "eu-west-1",
           "resources": [], "detail": detail})
}

/// KMS calls that change something: none of them may happen for a refused request.
const KMS_WRITES: [&str; 11] = [
    "kms.TagResource",
    "kms.UntagResource",
    "kms.GetParametersForImport",
    "kms.ImportKeyMaterial",
    "kms.RotateKeyOnDemand",
    "kms.CreateKey",
    "kms.UpdateAlias",
    "kms.PutKeyPolicy",
    "kms.DeleteImportedKeyMaterial",
    "kms.ScheduleKeyDeletion",
    "kms.CreateGrant",
];

fn writes(counter: &CallCounter) -> u64 {
    KMS_WRITES.iter().map(|op| counter.get(op)).sum()
}

/// Log lines written while `f` runs on this thread (the Lambda's JSON layer).
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn audit(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["audit"] == kms_rotation_guard::remediation::AUDIT)
            .collect()
    }
}

/// The hostile requests of issue 20, each answered with RemediationRefused and zero KMS
/// writes, against LocalStack's real BYOK key (and, for the quota, AWS's ListKeyRotations
/// shape, which LocalStack lacks). The same key, asked for plainly by an account that uses
/// it, is rotated: the refusals are the policy's, not a broken setup.
#[tokio::test]
async fn hostile_requests_are_refused_with_zero_kms_writes() {
    use tracing_subscriber::layer::SubscriberExt;
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry().with(kms_rotation_guard::logging::json_layer(
        move || writer.clone(),
        tracing_subscriber::filter::LevelFilter::INFO,
    ));
    // The process-wide subscriber (a scoped one misses events once other tests' threads
    // have cached the callsites); only this test sets one, and only workload requests (the
    // accounts below) are read back.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    // A stale key (400 days) that account 111122223333 uses, by its key policy.
    let own = "000000000000";
    let out = aws
        .kms()
        .create_key()
        .origin(OriginType::External)
        .policy(used_by(&["111122223333"], own))
        .send()
        .await
        .unwrap();
    let id = out.key_metadata().unwrap().key_id().to_string();
    let arn = out.key_metadata().unwrap().arn().unwrap().to_string();
    let first = RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(&id)
    };
    Rotator::new(&aws, softhsm()).rotate(&first).await.unwrap();
    tag(&aws, &id, "LastRotationDate", &ymd(days_from_now(-400))).await;
    // Alias-swap is even enabled here: a workload still cannot ask for it.
    let settings = settings(&[("KRG_ALLOW_ALIAS_SWAP", "true")]);
    let request = |extra: Value| {
        let mut d = json!({"keyId": arn, "resourceId": "bucket-a", "resourceType": "s3",
                           "ruleParameters": "{\"maxKeyAgeDays\":\"365\",\"rotationTagKey\":\"LastRotationDate\"}"});
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    let hostile = [
        (
            "reimport from a workload",
            bus_event("111122223333", request(json!({"action": "reimport"}))),
            "re-import is the operator's",
        ),
        (
            "alias-swap from a workload",
            bus_event("111122223333", request(json!({"strategy": "alias-swap"}))),
            "strategy alias-swap differs",
        ),
        (
            "maxKeyAgeDays 1",
            bus_event("111122223333", request(json!({"ruleParameters": "{\"maxKeyAgeDays\":\"1\"}"}))),
            "MinRotationIntervalDays 90",
        ),
        (
            "a foreign rotationTagKey",
            bus_event(
                "111122223333",
                request(json!({"ruleParameters": "{\"rotationTagKey\":\"DataClassification\"}"})),
            ),
            "rotationTagKey \"DataClassification\"",
        ),
        (
            "a key the calling account does not use",
            bus_event("555566667777", request(json!({}))),
            "account 555566667777 does not use",
        ),
    ];
    for (what, event, says) in hostile {
        counter.reset();
        let e = remediate(&aws, &settings, event.clone()).await.unwrap_err();
        assert_eq!(e.error_type(), "RemediationRefused", "{what}: {e}");
        assert!(e.to_string().contains(says), "{what}: {e}");
        assert_eq!(writes(&counter), 0, "{what}: KMS writes {:?}", counter.snapshot());
        // Through the bus, a refusal is answered (no asynchronous retry); directly, it fails.
        let answered = answer(true, Err(e)).unwrap();
        assert_eq!(answered["status"], "refused", "{what}");
        eprintln!("refused, 0 KMS writes ({} reads): {what}", counter.total());
    }
    // The same account, asking plainly: rotated once.
    counter.reset();
    let v = remediate(&aws, &settings, bus_event("111122223333", request(json!({})))).await.unwrap();
    assert_eq!(status(&v), "rotated", "{v}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 1, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.GetKeyPolicy"), 2, "usage read before and after the claim: {:?}", counter.snapshot());

    // Few rotations left: 21 of 25 on-demand rotations used (AWS's ListKeyRotations, which
    // LocalStack lacks), the key due by its tag; the workload 444455556666 uses it.
    let month = |m: i64| (Utc::now() - chrono::Duration::days(30 * m)).timestamp();
    let mut rotations: Vec<Value> = (0..21)
        .map(|i| {
            json!({"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "KeyMaterialId": format!("m{i}"),
                        "ImportState": "IMPORTED", "KeyMaterialState": "NON_CURRENT",
                        "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "RotationDate": month(40 - i),
                        "RotationType": "ON_DEMAND"})
        })
        .collect();
    rotations[20]["KeyMaterialState"] = json!("CURRENT");
    rotations[20]["RotationDate"] = json!((Utc::now() - chrono::Duration::days(400)).timestamp());
    let (endpoint, seen) = fake_kms(Some(json!({"Rotations": rotations, "Truncated": false})));
    let fake = CallCounter::default();
    let aws = Aws::new(sdk_config(&endpoint, static_creds()).await).with_counter(fake.clone());
    let m = vars(&[]);
    let no_hsm = RemediationSettings::from_lookup(move |n| m.get(n).cloned());
    let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let e = remediate(&aws, &no_hsm, bus_event("444455556666", json!({"keyId": key, "resourceId": "b"})))
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "RemediationRefused", "{e}");
    assert!(e.to_string().contains("few rotations left (4 of 25"), "{e}");
    assert_eq!(writes(&fake), 0, "{:?}", fake.snapshot());
    let ops: Vec<String> = seen.lock().unwrap().iter().map(|(op, _)| op.clone()).collect();
    assert!(
        ops.iter().all(|o| ["describekey", "listresourcetags", "listkeyrotations", "getkeypolicy", "listgrants"]
            .contains(&o.as_str())),
        "{ops:?}"
    );
    // With 6 left the same key is due and goes on to the rotation (here: to the HSM, which
    // this function has none of - a configuration error, after the gate).
    let (endpoint, _) = fake_kms(Some(json!({"Rotations": rotations[2..].to_vec(), "Truncated": false})));
    let aws = Aws::new(sdk_config(&endpoint, static_creds()).await);
    let e = remediate(&aws, &no_hsm, bus_event("444455556666", json!({"keyId": key}))).await.unwrap_err();
    assert_ne!(e.error_type(), "RemediationRefused", "6 left is not few: {e}");

    // One audit line per remediation, with the outcome the stack's metric filters count.
    let audit: Vec<Value> = lines
        .audit()
        .into_iter()
        .filter(|l| ["111122223333", "555566667777", "444455556666"].contains(&l["requester"].as_str().unwrap_or("")))
        .collect();
    let outcomes: Vec<&str> = audit.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        outcomes,
        ["refused", "refused", "refused", "refused", "refused", "rotated", "refused", "failed"],
        "{audit:#?}"
    );
    assert_eq!(audit[0]["requester"], "111122223333");
    assert_eq!(audit[4]["requester"], "555566667777");
    assert_eq!(audit[5]["usage"], "used", "{:?}", audit[5]);
    assert!(audit[6]["reason"].as_str().unwrap().contains("few rotations left"));
    for outcome in &outcomes {
        assert!(
            kms_rotation_guard::remediation::METERED_OUTCOMES.contains(outcome) || *outcome == "failed",
            "{outcome}"
        );
    }
}

/// The operator (a direct invocation, possible only inside the security account) is held to
/// the policy's floor too (forcing is the CLI's), and a policy that contradicts itself stops
/// the function. (Re-import and alias-swap by an operator: the tests above and
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
