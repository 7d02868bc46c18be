//! The runbook (issue 22) against the emulators: rollback and retirement on LocalStack KMS +
//! SoftHSM2, the campaign on LocalStack + SoftHSM2, the watcher and the inventory on moto.
//! CloudTrail LookupEvents and SSM GetCalendarState exist in neither emulator: those answers
//! come from loopback endpoints that reply in the API reference's shape (`fake_trail`,
//! `fake_calendar`), and docs/emulators.md names the gaps.
//!
//! One test binary: `keys`, `rollback`, `retire`, `campaign`, `watch`; shared helpers here.

mod campaign;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod keys;
mod retire;
mod rollback;
mod watch;

use std::sync::{Arc, Mutex};

use aws_sdk_kms::types::{OriginType, Tag};
use common::*;
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::rotation::hsm::{WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{RotationRequest, Rotator, Strategy};
use serde_json::{json, Value};

/// LocalStack's default account.
pub const LS_ACCOUNT: &str = "000000000000";

/// LocalStack refuses RSA_AES_KEY_WRAP_SHA_1 (AWS accepts it): the OAEP variant is pinned.
pub fn request(key: impl Into<String>) -> RotationRequest {
    RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(key)
    }
}

/// LocalStack's KMS, CloudTrail and SSM at the given fakes, with a call counter.
pub async fn aws_at(ls: &LocalStack, trail: Option<&str>, ssm: Option<&str>) -> (Aws, CallCounter) {
    let counter = CallCounter::default();
    let mut aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_counter(counter.clone());
    if let Some(t) = trail {
        aws = aws.with_service_endpoint("cloudtrail", t);
    }
    if let Some(s) = ssm {
        aws = aws.with_service_endpoint("ssm", s);
    }
    (aws, counter)
}

/// KMS calls that change something, by the counter's names.
pub fn kms_writes(counter: &CallCounter) -> Vec<String> {
    counter
        .snapshot()
        .into_iter()
        .filter(|(op, n)| {
            *n > 0
                && op.starts_with("kms.")
                && !["Describe", "List", "Get", "Encrypt", "Decrypt"].iter().any(|r| op["kms.".len()..].starts_with(r))
        })
        .map(|(op, n)| format!("{op}={n}"))
        .collect()
}

/// An EXTERNAL key with an alias and tags, its first material imported from SoftHSM.
pub async fn byok_key(aws: &Aws, alias: &str, tags: &[(&str, &str)]) -> String {
    let mut create = aws.kms().create_key().origin(OriginType::External).description(format!("{alias} runbook test"));
    for (k, v) in tags {
        create = create.tags(Tag::builder().tag_key(*k).tag_value(*v).build().unwrap());
    }
    let out = create.send().await.unwrap();
    let id = out.key_metadata().unwrap().key_id().to_string();
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&id).send().await.unwrap();
    Rotator::new(aws, softhsm()).rotate(&request(&id)).await.unwrap();
    arn_of(aws, &id).await
}

pub async fn arn_of(aws: &Aws, key: &str) -> String {
    aws.kms().describe_key().key_id(key).send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string()
}

pub async fn state_of(aws: &Aws, key: &str) -> String {
    aws.kms()
        .describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_state()
        .unwrap()
        .as_str()
        .to_string()
}

pub async fn tags_of(aws: &Aws, key: &str) -> std::collections::BTreeMap<String, String> {
    let out = aws.kms().list_resource_tags().key_id(key).send().await.unwrap();
    out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect()
}

pub async fn target_of(aws: &Aws, alias: &str) -> String {
    arn_of(aws, alias).await
}

/// Rotates `alias` by alias swap (the operator's break glass), returning the successor's ARN.
pub async fn alias_swap(aws: &Aws, alias: &str) -> String {
    let req = RotationRequest { strategy: Strategy::AliasSwap, ..request(alias) };
    let (_, record) = Rotator::new(aws, softhsm()).rotate(&req).await.unwrap();
    record.unwrap().current_key_arn
}

/// A CloudTrail KMS record in the shape of the KMS Developer Guide's examples.
pub fn kms_record(name: &str, key_arn: &str, caller: &str, error: Option<&str>, context: Value, at: &str) -> Value {
    let mut r = json!({
        "eventVersion": "1.11",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:app",
            "arn": format!("arn:aws:sts::{caller}:assumed-role/app/session"), "accountId": caller},
        "eventTime": at,
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "192.0.2.0",
        "userAgent": "aws-sdk-java",
        "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": context},
        "responseElements": null,
        "requestID": "4bd7b0b3-1f2c-4b36-a1f8-000000000000",
        "eventID": format!("evt-{name}-{caller}"),
        "readOnly": true,
        "resources": [{"accountId": key_arn.split(':').nth(4).unwrap_or(""), "type": "AWS::KMS::Key", "ARN": key_arn}],
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": key_arn.split(':').nth(4).unwrap_or(""),
        "eventCategory": "Management"
    });
    if let Some(code) = error {
        r["errorCode"] = json!(code);
        r["errorMessage"] = json!("The request was rejected because the key is not usable");
    }
    r
}

/// The records a fake CloudTrail answers with, by key ARN (what LookupEvents would find).
pub type Trail = Arc<Mutex<Vec<Value>>>;

/// A CloudTrail endpoint answering LookupEvents as the API reference gives it: `Events` with
/// `CloudTrailEvent` as a JSON string, filtered by the requested ResourceName, no NextToken.
pub fn fake_trail() -> (String, Trail, Recorded) {
    let records: Trail = Arc::new(Mutex::new(Vec::new()));
    let held = records.clone();
    let (endpoint, seen) = fake_json_endpoint(move |op, req| {
        assert_eq!(op, "lookupevents", "only LookupEvents is expected");
        let wanted = req["LookupAttributes"][0]["AttributeValue"].as_str().unwrap_or("").to_string();
        let (start, end) = (req["StartTime"].as_f64().unwrap_or(0.0), req["EndTime"].as_f64().unwrap_or(f64::MAX));
        let at = |r: &Value| {
            chrono::DateTime::parse_from_rfc3339(r["eventTime"].as_str().unwrap()).unwrap().timestamp() as f64
        };
        let events: Vec<Value> = held
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["resources"][0]["ARN"] == wanted && at(r) >= start && at(r) <= end)
            .map(|r| {
                json!({
                    "EventId": r["eventID"], "EventName": r["eventName"], "ReadOnly": "true",
                    "EventTime": chrono::DateTime::parse_from_rfc3339(r["eventTime"].as_str().unwrap()).unwrap().timestamp(),
                    "EventSource": "kms.amazonaws.com", "Username": "session",
                    "Resources": [{"ResourceType": "AWS::KMS::Key", "ResourceName": wanted}],
                    "CloudTrailEvent": r.to_string()
                })
            })
            .collect();
        (200, json!({ "Events": events }))
    });
    (endpoint, records, seen)
}

/// An SSM endpoint answering GetCalendarState as the API reference gives it.
pub fn fake_calendar(state: &'static str) -> (String, Recorded) {
    fake_json_endpoint(move |op, _| {
        assert_eq!(op, "getcalendarstate");
        (200, json!({"State": state, "AtTime": "2026-12-05T21:00:00Z", "NextTransitionTime": "2026-12-05T23:00:00Z"}))
    })
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
