//! A warm rule Lambda serving an organization keeps a key's tags and rotations across
//! invocations (`key::cache`, turned on as `lambda::run_rule` does): three members' periodic
//! evaluations read the shared security-account key's tags once, while DescribeKey runs
//! in every invocation. A rotation gives the key new current material, and DescribeKey
//! says so (CurrentKeyMaterialId): every member is judged on the new facts at once.
//!
//! moto's DescribeKey has no CurrentKeyMaterialId (docs/emulators.md), so the fault proxy
//! adds it as AWS gives it: one material id before the rotation, another after.

mod common;

use std::time::Duration;

use aws_sdk_kms::types::{OriginType, Tag};
use common::fault_proxy::AnsweringProxy;
use common::org_events::periodic;
use common::seed::{self, Sse};
use common::*;
use kms_rotation_guard::{handler, rule};
use serde_json::{json, Value};

const MEMBERS: [&str; 3] = ["222222222222", "333333333333", "555555555555"];
const EXECUTION_ROLE: &str = "kms-rotation-guard-member";

fn params() -> Value {
    json!({"executionRoleName": EXECUTION_ROLE, "keyReaderRoleName": READER_ROLE})
}

/// DescribeKey answered with the key's current material id, as AWS gives it.
fn with_material(moto: &Moto, material: &str) -> AnsweringProxy {
    AnsweringProxy::start(
        moto.port,
        &json!([{"match": ["TrentService.DescribeKey"], "patch": {"KeyMetadata": {"CurrentKeyMaterialId": material}}}]),
    )
}

/// One member's periodic evaluation of its one bucket: the verdict.
async fn judge(function: &kms_rotation_guard::aws::Aws, member: &str) -> String {
    let out = handler::handle_as(
        function,
        rule::S3,
        periodic(member, &params()),
        days_from_now(1),
        None,
        Some(EXECUTION_ROLE),
    )
    .await
    .unwrap();
    assert_eq!(out.evaluations.len(), 1, "{member}");
    out.evaluations[0].compliance.as_str().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_rule_reads_a_shared_keys_tags_once_until_the_key_rotates() {
    kms_rotation_guard::key::cache::enable_for_process(Duration::from_secs(600));
    let moto = Moto::start();
    let security = assumed(&moto.endpoint, SECURITY).await;
    let old = ymd(days_from_now(-400));
    let key = seed::key(&security, "shared", OriginType::External, &[("LastRotationDate", &old)]).await;
    for m in MEMBERS {
        let member = assumed(&moto.endpoint, m).await;
        seed::bucket(&member, &format!("data-{m}"), Sse::Kms(Some(&seed::alias_arn(SECURITY, "shared")))).await;
    }
    // Before: one material. Every member is judged; the tags and rotations are read once.
    let before = with_material(&moto, "m1");
    let (function, counter) = workload(&before.endpoint).await;
    for m in MEMBERS {
        assert_eq!(judge(&function, m).await, "NON_COMPLIANT", "{m}: material 400 days old");
    }
    assert_eq!(counter.get("kms.DescribeKey"), 3, "DescribeKey in every invocation: {:?}", counter.snapshot());
    assert_eq!(counter.get("kms.ListResourceTags"), 1, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.ListKeyRotations"), 1, "{:?}", counter.snapshot());

    // The rotation: new material becomes current (KMS gives it a new id), then the tag.
    security.kms().rotate_key_on_demand().key_id(&key).send().await.unwrap();
    let today = ymd(chrono::Utc::now());
    let tag = Tag::builder().tag_key("LastRotationDate").tag_value(&today).build().unwrap();
    security.kms().tag_resource().key_id(&key).tags(tag).send().await.unwrap();

    // After: DescribeKey names other material, so nothing kept serves. And a key rotated
    // within the hour is not kept at all: each member reads it afresh until it settles.
    let after = with_material(&moto, "m2");
    let (function, counter) = workload(&after.endpoint).await;
    for m in MEMBERS {
        assert_eq!(judge(&function, m).await, "COMPLIANT", "{m}: rotated today");
    }
    assert_eq!(counter.get("kms.ListResourceTags"), 3, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.ListKeyRotations"), 3, "{:?}", counter.snapshot());
    assert!(before.answered(0) >= 3 && after.answered(0) >= 3, "DescribeKey went through the proxies");
}
