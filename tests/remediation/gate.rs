//! The gate and the claim: many remediations on one key rotate it once; fresh, claimed and unsafe keys are not rotated; the CLI applies the same gate unless forced.

use super::*;

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
