//! `retire` on LocalStack + SoftHSM, CloudTrail's answers from an AWS-shaped endpoint: each
//! refusal (no successor, a resource still on the key, recent use), then the whole path:
//! disable → wait → schedule deletion (30 days) → pending → after KMS deleted the key, the
//! HSM objects labelled with its ARN are destroyed (and the successor's are not).

use chrono::{Duration, Utc};
use kms_rotation_guard::rotation::hsm::KeyMaterialSource;
use kms_rotation_guard::runbook::retire;
use kms_rotation_guard::runbook::usage::ResourceUsage;
use kms_rotation_guard::runbook::RETIREMENT_TAG;
use serde_json::json;

use crate::common::*;
use crate::*;

fn scan(rows: serde_json::Value) -> ResourceUsage {
    let export = json!({"kind": "kms-rotation-guard/estate-scan", "version": 1, "scanTime": now_rfc3339(),
                        "rows": rows, "coverage": [], "unjudged": []});
    ResourceUsage::parse(export.to_string().as_bytes()).unwrap()
}

fn row(key_arn: &str) -> serde_json::Value {
    json!({"account": "123456789012", "region": REGION, "resourceType": "AWS::S3::Bucket", "resourceId": "still-here",
           "keyArn": key_arn, "compliance": "COMPLIANT"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_changes_nothing() {
    let ls = LocalStack::start();
    let (trail_url, trail, _) = fake_trail();
    let (aws, counter) = aws_at(&ls, Some(&trail_url), None).await;
    let plain = byok_key(&aws, "rt-plain", &[]).await;
    let old = byok_key(&aws, "rt-refuse", &[]).await;
    let new = alias_swap(&aws, "alias/rt-refuse").await;
    let now = Utc::now();
    counter.reset();

    // No successor recorded.
    let e =
        retire::run(&aws, LS_ACCOUNT, &plain, 30, Some((&scan(json!([])), None)), None, false, now).await.unwrap_err();
    assert!(e.to_string().contains("no successor"), "{e}");
    // A resource still on the key, per the scan.
    let e =
        retire::run(&aws, LS_ACCOUNT, &old, 30, Some((&scan(json!([row(&old), row(&new)])), None)), None, false, now)
            .await
            .unwrap_err();
    assert!(e.to_string().contains("still use") && e.to_string().contains("still-here"), "{e}");
    // Recent successful use, per CloudTrail.
    trail.lock().unwrap().push(kms_record("Decrypt", &old, "123456789012", None, json!({"app": "x"}), &now_rfc3339()));
    let e = retire::run(&aws, LS_ACCOUNT, &old, 30, Some((&scan(json!([row(&new)])), None)), None, false, now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CloudTrail shows"), "{e}");
    assert!(e.is_refusal());
    // A scan more than a day old proves nothing.
    let stale = ResourceUsage::parse(json!([row(&new)]).to_string().as_bytes()).unwrap();
    let e = retire::run(&aws, LS_ACCOUNT, &old, 30, Some((&stale, Some(now - Duration::hours(30)))), None, false, now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("more than a day old"), "{e}");

    assert_eq!(kms_writes(&counter), Vec::<String>::new());
    assert_eq!(state_of(&aws, &old).await, "Enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_path_from_disable_to_the_hsm_objects() {
    let ls = LocalStack::start();
    let (trail_url, trail, _) = fake_trail();
    let (aws, _) = aws_at(&ls, Some(&trail_url), None).await;
    let old = byok_key(&aws, "rt-path", &[]).await;
    let new = alias_swap(&aws, "alias/rt-path").await;
    // Used once long ago, before the grace window; our own probe recently (ignored).
    trail.lock().unwrap().push(kms_record("Decrypt", &old, "123456789012", None, json!({}), "2026-01-01T00:00:00Z"));
    trail.lock().unwrap().push(kms_record(
        "Decrypt",
        &old,
        LS_ACCOUNT,
        None,
        json!({"kms-rotation-guard:probe": "verification"}),
        &now_rfc3339(),
    ));
    let usage = scan(json!([row(&new)]));
    let now = Utc::now();

    let r = retire::run(&aws, LS_ACCOUNT, &old, 14, Some((&usage, None)), None, false, now).await.unwrap();
    assert_eq!(r.outcome, "disabled", "{}", r.message);
    assert_eq!(state_of(&aws, &old).await, "Disabled");
    assert!(tags_of(&aws, &old).await[RETIREMENT_TAG].starts_with("disabled "));

    let r = retire::run(&aws, LS_ACCOUNT, &old, 14, Some((&usage, None)), None, false, now + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(r.outcome, "waiting");
    assert_eq!(state_of(&aws, &old).await, "Disabled");

    let later = now + Duration::days(15);
    let usage_later = {
        let export = json!({"scanTime": later.to_rfc3339(), "rows": [row(&new)], "coverage": [], "unjudged": []});
        ResourceUsage::parse(export.to_string().as_bytes()).unwrap()
    };
    let r = retire::run(&aws, LS_ACCOUNT, &old, 14, Some((&usage_later, None)), None, false, later).await.unwrap();
    assert_eq!(r.outcome, "deletion-scheduled", "{}", r.message);
    assert_eq!(state_of(&aws, &old).await, "PendingDeletion");
    let r = retire::run(&aws, LS_ACCOUNT, &old, 14, Some((&usage_later, None)), None, false, later).await.unwrap();
    assert_eq!(r.outcome, "pending-deletion");

    // KMS deleted the key (LocalStack cannot skip the 30 days): a KMS that no longer knows it.
    let (gone, _) =
        fake_json_endpoint(|_, _| (400, json!({"__type": "NotFoundException", "message": "Key 'arn' does not exist"})));
    let deleted = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_service_endpoint("kms", gone);
    assert!(!softhsm().kept_materials(&old).unwrap().is_empty(), "the old key's material was kept");
    let kept_new = softhsm().kept_materials(&new).unwrap().len();
    let e = retire::run(&deleted, LS_ACCOUNT, &old, 14, None, None, false, later).await.unwrap_err();
    assert!(e.to_string().contains("--hsm"), "{e}");
    let r = retire::run(&deleted, LS_ACCOUNT, &old, 14, None, Some(softhsm()), false, later).await.unwrap();
    assert_eq!(r.outcome, "hsm-objects-destroyed");
    assert!(!r.destroyed.is_empty());
    assert!(
        softhsm().kept_materials(&old).unwrap().iter().all(|k| k.key_arn != old),
        "every object of the old key is gone"
    );
    assert_eq!(softhsm().kept_materials(&new).unwrap().len(), kept_new, "the successor's objects are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_on_the_disabled_key_stops_the_deletion_and_rollback_brings_it_back() {
    let ls = LocalStack::start();
    let (trail_url, trail, _) = fake_trail();
    let (aws, _) = aws_at(&ls, Some(&trail_url), None).await;
    let old = byok_key(&aws, "rt-needed", &[]).await;
    let new = alias_swap(&aws, "alias/rt-needed").await;
    let usage = scan(json!([row(&new)]));
    let now = Utc::now();
    retire::run(&aws, LS_ACCOUNT, &old, 7, Some((&usage, None)), None, false, now).await.unwrap();
    // Someone still needed it: a Decrypt that failed because the key is disabled.
    trail.lock().unwrap().push(kms_record(
        "Decrypt",
        &old,
        "123456789012",
        Some("DisabledException"),
        json!({}),
        &now_rfc3339(),
    ));
    let later = now + Duration::days(8);
    let usage_later =
        ResourceUsage::parse(json!({"scanTime": later.to_rfc3339(), "rows": [row(&new)]}).to_string().as_bytes())
            .unwrap();
    let e = retire::run(&aws, LS_ACCOUNT, &old, 7, Some((&usage_later, None)), None, false, later).await.unwrap_err();
    assert!(e.to_string().contains("rollback --key"), "{e}");
    assert_eq!(state_of(&aws, &old).await, "Disabled");
    let r = kms_rotation_guard::runbook::rollback::run(&aws, &old, false).await.unwrap();
    assert_eq!(r.outcome, "re-enabled");
    assert_eq!(state_of(&aws, &old).await, "Enabled");
    assert!(!tags_of(&aws, &old).await.contains_key(RETIREMENT_TAG));
}
