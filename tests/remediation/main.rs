//! The remediation path, called in-process as the Lambda calls it: `lambda::remediate`
//! against LocalStack's KMS (real BYOK import) with key material from SoftHSM2.
//!
//! Config starts one remediation per NON_COMPLIANT resource, in parallel. A key has 25
//! on-demand rotations for life, so 30 resources on one stale key must rotate it once.
//!
//! One test binary: `gate` (the claim, the fresh/claimed/unsafe keys, the CLI's gate),
//! `payload` (validation order, the PIN), `policy` (the 24-hour check, the operator's floor,
//! multi-Region) and `hostile` (issue 20's refused requests); this file holds the shared helpers.

#[path = "../common/mod.rs"]
mod common;
mod gate;
mod hostile;
mod payload;
mod policy;

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
