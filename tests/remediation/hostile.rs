//! Issue 20: a workload account can only ask; the security account decides.

use super::*;

/// A workload's request as the request rule delivers it: EventBridge's envelope, whose
/// `account` EventBridge sets, around the request the workload's document wrote.
fn bus_event(account: &str, detail: Value) -> Value {
    json!({"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": REQUEST_DETAIL_TYPE,
           "source": WORKLOAD_SOURCE, "account": account, "time": "2026-12-05T10:00:00Z", "region": "eu-west-1",
           "resources": [], "detail": detail})
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
