//! A catalogue of malformed Lambda payloads, each built from a real sample event with one
//! thing broken, run through the whole handler against a real moto server. Every case
//! ends in a clear error naming the offending field (or the designed NOT_APPLICABLE),
//! never a panic, and never a PutEvaluations call (for errors, no AWS call at all).

mod common;

use std::panic::AssertUnwindSafe;

use common::*;
use futures_util::FutureExt;
use kms_rotation_guard::rule::{self, Rule};
use kms_rotation_guard::verdict::Compliance;
use kms_rotation_guard::{event, handler};
use serde_json::{json, Value};

fn sample(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(root().join("events").join(name)).unwrap()).unwrap()
}

/// A sample event with its invokingEvent edited as JSON.
fn with_invoking(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut e = sample(name);
    let mut inv: Value = serde_json::from_str(e["invokingEvent"].as_str().unwrap()).unwrap();
    edit(&mut inv);
    e["invokingEvent"] = Value::String(inv.to_string());
    e
}

/// A sample change event with its configurationItem edited.
fn with_item(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    with_invoking(name, |inv| edit(&mut inv["configurationItem"]))
}

/// A sample S3 change event with its (parsed) ServerSideEncryptionConfiguration edited,
/// then written back as the JSON string Config sends.
fn with_s3_sse(edit: impl FnOnce(&mut Value)) -> Value {
    with_item("s3-bucket-change.json", |item| {
        let slot = &mut item["supplementaryConfiguration"]["ServerSideEncryptionConfiguration"];
        let mut sse: Value = serde_json::from_str(slot.as_str().unwrap()).unwrap();
        edit(&mut sse);
        *slot = Value::String(sse.to_string());
    })
}

fn with_params(name: &str, params: Value) -> Value {
    let mut e = sample(name);
    e["ruleParameters"] = params;
    e
}

fn without(name: &str, field: &str) -> Value {
    let mut e = sample(name);
    e.as_object_mut().unwrap().remove(field);
    e
}

enum Payload {
    Json(Value),
    /// Raw bytes, as the CLI reads an event file (`event::parse_bytes`).
    Bytes(Vec<u8>),
}

enum Expect {
    /// Err whose message contains every fragment.
    Err(&'static [&'static str]),
    /// The designed outcome: one NOT_APPLICABLE evaluation whose annotation says why.
    NotApplicable(&'static str),
    /// A verdict that is not COMPLIANT, or an error naming the field: what missing data
    /// may honestly produce. (See the report: these verdicts are drawn from absent data.)
    NotCompliantOrErr(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    rule: Rule,
    payload: Payload,
    expect: Expect,
}

fn case(name: &'static str, rule: Rule, payload: Value, expect: Expect) -> Case {
    Case { name, rule, payload: Payload::Json(payload), expect }
}

const S3_CHANGE: &str = "s3-bucket-change.json";
const RDS_CHANGE: &str = "rds-instance-change.json";
const RDS_CLUSTER: &str = "rds-cluster-change.json";
const DDB_CHANGE: &str = "dynamodb-table-change.json";
const OVERSIZED: &str = "s3-bucket-oversized.json";
const PERIODIC: &str = "s3-periodic.json";

fn catalogue() -> Vec<Case> {
    use Expect::*;
    let (s3, rds, ddb) = (rule::S3, rule::RDS, rule::DYNAMODB);
    let mut cases = vec![
        // ---- the envelope ----
        case("a JSON array", s3, json!([sample(S3_CHANGE)]), Err(&["must be a JSON object"])),
        case("a JSON string", s3, json!("event"), Err(&["must be a JSON object"])),
        case("null", s3, Value::Null, Err(&["must be a JSON object"])),
        case(
            "invokingEvent an object, not a string",
            s3,
            {
                let mut e = sample(S3_CHANGE);
                e["invokingEvent"] = serde_json::from_str(e["invokingEvent"].as_str().unwrap()).unwrap();
                e
            },
            Err(&["invokingEvent must be a string"]),
        ),
        case(
            "invokingEvent a number",
            s3,
            sample(S3_CHANGE).tap(|e| e["invokingEvent"] = json!(5)),
            Err(&["invokingEvent must be a string"]),
        ),
        case(
            "invokingEvent a string that is not JSON",
            s3,
            sample(S3_CHANGE)
                .tap(|e| e["invokingEvent"] = json!("{\"messageType\": \"ConfigurationItemChangeNotification\", ")),
            Err(&["invokingEvent is not JSON"]),
        ),
        case("invokingEvent missing", s3, without(S3_CHANGE, "invokingEvent"), Err(&["invokingEvent is missing"])),
        case(
            "invokingEvent null",
            s3,
            sample(S3_CHANGE).tap(|e| e["invokingEvent"] = Value::Null),
            Err(&["invokingEvent is missing"]),
        ),
        case(
            "invokingEvent a JSON string of an array",
            s3,
            sample(S3_CHANGE).tap(|e| e["invokingEvent"] = json!("[1, 2]")),
            Err(&["messageType is missing"]),
        ),
        case("resultToken missing", s3, without(S3_CHANGE, "resultToken"), Err(&["resultToken is missing"])),
        case(
            "resultToken empty",
            s3,
            sample(S3_CHANGE).tap(|e| e["resultToken"] = json!("")),
            Err(&["resultToken is missing"]),
        ),
        case(
            "resultToken a number",
            s3,
            sample(S3_CHANGE).tap(|e| e["resultToken"] = json!(42)),
            Err(&["resultToken must be a string"]),
        ),
        case("accountId missing (change event)", s3, without(S3_CHANGE, "accountId"), Err(&["accountId is missing"])),
        case(
            "accountId a number",
            s3,
            sample(S3_CHANGE).tap(|e| e["accountId"] = json!(123456789012u64)),
            Err(&["accountId must be a string"]),
        ),
        case(
            "configRuleName an object",
            s3,
            sample(S3_CHANGE).tap(|e| e["configRuleName"] = json!({})),
            Err(&["configRuleName must be a string"]),
        ),
        case(
            "eventLeftScope a string",
            s3,
            sample(S3_CHANGE).tap(|e| e["eventLeftScope"] = json!("true")),
            Err(&["eventLeftScope must be true or false"]),
        ),
        case(
            "eventLeftScope null",
            s3,
            sample(S3_CHANGE).tap(|e| e["eventLeftScope"] = Value::Null),
            Err(&["eventLeftScope must be true or false"]),
        ),
        // ---- the invoking event ----
        case(
            "unknown messageType",
            s3,
            with_invoking(S3_CHANGE, |inv| inv["messageType"] = json!("ConfigurationSnapshotDeliveryCompleted")),
            Err(&["unknown messageType", "ConfigurationSnapshotDeliveryCompleted"]),
        ),
        case(
            "messageType missing",
            s3,
            with_invoking(S3_CHANGE, |inv| {
                inv.as_object_mut().unwrap().remove("messageType");
            }),
            Err(&["messageType is missing"]),
        ),
        case(
            "messageType a number",
            s3,
            with_invoking(S3_CHANGE, |inv| inv["messageType"] = json!(1)),
            Err(&["messageType must be a string"]),
        ),
        case(
            "configurationItem missing",
            s3,
            with_invoking(S3_CHANGE, |inv| {
                inv.as_object_mut().unwrap().remove("configurationItem");
            }),
            Err(&["configurationItem is missing or not an object"]),
        ),
        case(
            "configurationItem a string",
            s3,
            with_invoking(S3_CHANGE, |inv| inv["configurationItem"] = json!("{}")),
            Err(&["configurationItem is missing or not an object"]),
        ),
        case(
            "configurationItemCaptureTime a number",
            s3,
            with_item(S3_CHANGE, |i| i["configurationItemCaptureTime"] = json!(1_700_000_000_000u64)),
            Err(&["configurationItemCaptureTime must be a string"]),
        ),
        case(
            "configurationItemCaptureTime not a time",
            s3,
            with_item(S3_CHANGE, |i| i["configurationItemCaptureTime"] = json!("yesterday at noon")),
            Err(&["configurationItemCaptureTime is not an ISO 8601 time", "yesterday"]),
        ),
        case(
            "notificationCreationTime missing (periodic)",
            s3,
            with_invoking(PERIODIC, |inv| {
                inv.as_object_mut().unwrap().remove("notificationCreationTime");
            }),
            Err(&["notificationCreationTime is missing"]),
        ),
        case(
            "notificationCreationTime a number (periodic)",
            s3,
            with_invoking(PERIODIC, |inv| inv["notificationCreationTime"] = json!(0)),
            Err(&["notificationCreationTime must be a string"]),
        ),
        case(
            "configurationItemSummary missing (oversized)",
            s3,
            with_invoking(OVERSIZED, |inv| {
                inv.as_object_mut().unwrap().remove("configurationItemSummary");
            }),
            Err(&["configurationItemSummary is missing or not an object"]),
        ),
        case(
            "summary resourceId a number (oversized)",
            s3,
            with_invoking(OVERSIZED, |inv| inv["configurationItemSummary"]["resourceId"] = json!(7)),
            Err(&["resourceId must be a string"]),
        ),
        case(
            "summary configurationItemStatus missing (oversized)",
            s3,
            with_invoking(OVERSIZED, |inv| {
                inv["configurationItemSummary"].as_object_mut().unwrap().remove("configurationItemStatus");
            }),
            Err(&["configurationItemStatus is missing"]),
        ),
        // ---- the configuration item: fields every family reads ----
        case(
            "unknown resource type (designed: NOT_APPLICABLE)",
            s3,
            with_item(S3_CHANGE, |i| i["resourceType"] = json!("AWS::EC2::Instance")),
            NotApplicable("resource type AWS::EC2::Instance is not evaluated by this rule"),
        ),
        case(
            "resourceType a number",
            s3,
            with_item(S3_CHANGE, |i| i["resourceType"] = json!(3)),
            Err(&["configurationItem.resourceType must be a string"]),
        ),
        case(
            "resourceType missing",
            s3,
            with_item(S3_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("resourceType");
            }),
            Err(&["configurationItem.resourceType is missing"]),
        ),
        case(
            "resourceId a number",
            rds,
            with_item(RDS_CHANGE, |i| i["resourceId"] = json!(12)),
            Err(&["configurationItem.resourceId must be a string"]),
        ),
        case(
            "resourceId null",
            ddb,
            with_item(DDB_CHANGE, |i| i["resourceId"] = Value::Null),
            Err(&["configurationItem.resourceId is missing"]),
        ),
        case(
            "awsRegion a list",
            s3,
            with_item(S3_CHANGE, |i| i["awsRegion"] = json!(["eu-west-1"])),
            Err(&["configurationItem.awsRegion must be a string"]),
        ),
        case(
            "awsRegion missing",
            rds,
            with_item(RDS_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("awsRegion");
            }),
            Err(&["configurationItem.awsRegion is missing"]),
        ),
        case(
            "awsAccountId a number",
            ddb,
            with_item(DDB_CHANGE, |i| i["awsAccountId"] = json!(123456789012u64)),
            Err(&["configurationItem.awsAccountId must be a string"]),
        ),
        // ---- RDS ----
        case(
            "RDS configuration missing",
            rds,
            with_item(RDS_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("configuration");
            }),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "RDS configuration null on an OK item",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"] = Value::Null),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "RDS cluster configuration null on an OK item",
            rds,
            with_item(RDS_CLUSTER, |i| i["configuration"] = Value::Null),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "storageEncrypted a string",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"]["storageEncrypted"] = json!("true")),
            Err(&["configuration.storageEncrypted must be a boolean"]),
        ),
        case(
            "storageEncrypted a number",
            rds,
            with_item(RDS_CLUSTER, |i| i["configuration"]["storageEncrypted"] = json!(1)),
            Err(&["configuration.storageEncrypted must be a boolean"]),
        ),
        case(
            "kmsKeyId a number",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"]["kmsKeyId"] = json!(42)),
            Err(&["configuration.kmsKeyId must be a string"]),
        ),
        case(
            "kmsKeyId an object",
            rds,
            with_item(RDS_CLUSTER, |i| i["configuration"]["kmsKeyId"] = json!({"arn": "x"})),
            Err(&["configuration.kmsKeyId must be a string"]),
        ),
        case(
            "kmsKeyId not a key reference",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"]["kmsKeyId"] = json!("arn:aws:s3:::not-a-key")),
            Err(&["kmsKeyId", "not a KMS key reference"]),
        ),
        case(
            "RDS encrypted but kmsKeyId missing",
            rds,
            with_item(RDS_CHANGE, |i| {
                i["configuration"].as_object_mut().unwrap().remove("kmsKeyId");
            }),
            NotCompliantOrErr("no KMS key is named", "kmsKeyId"),
        ),
        // ---- DynamoDB ----
        case(
            "DynamoDB configuration null on an OK item",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"] = Value::Null),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "sSEDescription a string",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"] = json!("ENABLED")),
            Err(&["configuration.sSEDescription must be an object"]),
        ),
        case(
            "sSEDescription an array",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"] = json!([])),
            Err(&["configuration.sSEDescription must be an object"]),
        ),
        case(
            "kMSMasterKeyArn a number",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"]["kmsmasterKeyArn"] = json!(1)),
            Err(&["configuration.sSEDescription.kMSMasterKeyArn must be a string"]),
        ),
        case(
            "kMSMasterKeyArn not a key reference",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"]["kmsmasterKeyArn"] = json!("key please")),
            Err(&["kMSMasterKeyArn", "not a KMS key reference"]),
        ),
        case(
            "sSEDescription.status a boolean",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"]["status"] = json!(true)),
            Err(&["configuration.sSEDescription.status must be a string"]),
        ),
        case(
            "DynamoDB SSE type KMS but kMSMasterKeyArn missing",
            ddb,
            with_item(DDB_CHANGE, |i| {
                i["configuration"]["ssedescription"].as_object_mut().unwrap().remove("kmsmasterKeyArn");
            }),
            // ENABLED without a key ARN: the AWS managed key aws/dynamodb.
            NotCompliantOrErr("aws/dynamodb is AWS-managed", "kmsmasterKeyArn"),
        ),
        // ---- S3 ----
        case(
            "ServerSideEncryptionConfiguration a string that is not JSON",
            s3,
            with_item(S3_CHANGE, |i| {
                i["supplementaryConfiguration"]["ServerSideEncryptionConfiguration"] = json!("{\"rules\": [")
            }),
            Err(&["ServerSideEncryptionConfiguration is a string but not JSON"]),
        ),
        case(
            "rules not an array",
            s3,
            with_s3_sse(|sse| sse["rules"] = json!({"0": {}})),
            Err(&["ServerSideEncryptionConfiguration.rules must be an array"]),
        ),
        case(
            "rules a string",
            s3,
            with_s3_sse(|sse| sse["rules"] = json!("AES256")),
            Err(&["ServerSideEncryptionConfiguration.rules must be an array"]),
        ),
        case(
            "sseAlgorithm unknown",
            s3,
            with_s3_sse(|sse| sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = json!("rot13")),
            Err(&["unknown sseAlgorithm", "rot13"]),
        ),
        case(
            "sseAlgorithm a number",
            s3,
            with_s3_sse(|sse| sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = json!(256)),
            Err(&["applyServerSideEncryptionByDefault.sseAlgorithm must be a string"]),
        ),
        case(
            "kmsMasterKeyID a number",
            s3,
            with_s3_sse(|sse| sse["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyID"] = json!(5)),
            Err(&["applyServerSideEncryptionByDefault.kmsMasterKeyID must be a string"]),
        ),
        case(
            "kmsMasterKeyID not a key reference",
            s3,
            with_s3_sse(|sse| {
                sse["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyID"] = json!("alias/has space")
            }),
            Err(&["kmsMasterKeyID", "not a KMS key reference"]),
        ),
        case(
            "S3 supplementaryConfiguration missing",
            s3,
            with_item(S3_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("supplementaryConfiguration");
            }),
            NotCompliantOrErr("no default encryption is set", "supplementaryConfiguration"),
        ),
    ];

    // ---- rule parameters: every change, oversized and periodic sample shape ----
    for (label, params, fragments) in [
        (
            "ruleParameters not JSON",
            json!("{\"maxKeyAgeDays\": "),
            &["invalid rule parameter ruleParameters", "not JSON"][..],
        ),
        (
            "ruleParameters a JSON array",
            json!("[1]"),
            &["invalid rule parameter ruleParameters", "must be a JSON object"],
        ),
        (
            "ruleParameters an object, not a string",
            json!({"maxKeyAgeDays": "365"}),
            &["ruleParameters must be a string"],
        ),
        ("ruleParameters a number", json!(365), &["ruleParameters must be a string"]),
        (
            "maxKeyAgeDays zero",
            json!("{\"maxKeyAgeDays\": \"0\"}"),
            &["invalid rule parameter maxKeyAgeDays", "out of range"],
        ),
        (
            "maxKeyAgeDays negative",
            json!("{\"maxKeyAgeDays\": -30}"),
            &["invalid rule parameter maxKeyAgeDays", "out of range"],
        ),
        (
            "maxKeyAgeDays too large",
            json!("{\"maxKeyAgeDays\": \"36501\"}"),
            &["invalid rule parameter maxKeyAgeDays", "out of range"],
        ),
        ("maxKeyAgeDays a fraction", json!("{\"maxKeyAgeDays\": 1.5}"), &["invalid rule parameter maxKeyAgeDays"]),
        ("maxKeyAgeDays a word", json!("{\"maxKeyAgeDays\": \"a year\"}"), &["invalid rule parameter maxKeyAgeDays"]),
        ("maxKeyAgeDays a boolean", json!("{\"maxKeyAgeDays\": true}"), &["invalid rule parameter maxKeyAgeDays"]),
        ("maxKeyAgeDays null", json!("{\"maxKeyAgeDays\": null}"), &["invalid rule parameter maxKeyAgeDays"]),
        (
            "expiryWarningDays negative",
            json!("{\"expiryWarningDays\": \"-1\"}"),
            &["invalid rule parameter expiryWarningDays", "out of range"],
        ),
        (
            "allowAwsManagedKeys yes",
            json!("{\"allowAwsManagedKeys\": \"yes\"}"),
            &["invalid rule parameter allowAwsManagedKeys"],
        ),
        (
            "verifyTagAgainstKms a number",
            json!("{\"verifyTagAgainstKms\": 0}"),
            &["invalid rule parameter verifyTagAgainstKms"],
        ),
        ("rotationTagKey empty", json!("{\"rotationTagKey\": \"\"}"), &["invalid rule parameter rotationTagKey"]),
        (
            "keyReaderRoleName with a space",
            json!("{\"keyReaderRoleName\": \"key reader\"}"),
            &["invalid rule parameter keyReaderRoleName"],
        ),
        (
            "misspelt parameter",
            json!("{\"maxKeyAgeDay\": \"30\"}"),
            &["invalid rule parameter maxKeyAgeDay", "unknown parameter"],
        ),
    ] {
        for (sample_name, r) in [(S3_CHANGE, s3), (OVERSIZED, s3), (PERIODIC, s3), ("rds-instance-deleted.json", rds)] {
            cases.push(Case {
                name: Box::leak(format!("{label} ({sample_name})").into_boxed_str()),
                rule: r,
                payload: Payload::Json(with_params(sample_name, params.clone())),
                expect: Err(fragments),
            });
        }
    }

    // ---- raw bytes, as the CLI reads them ----
    let mut big = sample(S3_CHANGE);
    big["padding"] = Value::String("x".repeat(7 * 1024 * 1024));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut deep_invoking = sample(S3_CHANGE);
    deep_invoking["invokingEvent"] = Value::String(format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)));
    for (name, bytes, fragments) in [
        ("not JSON", b"this is not an event".to_vec(), &["not JSON"][..]),
        ("empty", Vec::new(), &["not JSON"]),
        ("invalid UTF-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'], &["not JSON"]),
        (
            "JSON with trailing garbage",
            [serde_json::to_vec(&sample(S3_CHANGE)).unwrap(), b" }".to_vec()].concat(),
            &["not JSON"],
        ),
        ("truncated JSON", serde_json::to_vec(&sample(S3_CHANGE)).unwrap()[..700].to_vec(), &["not JSON"]),
        ("a 7 MB payload", serde_json::to_vec(&big).unwrap(), &["over the 6291456-byte limit"]),
        ("100 000 nested arrays", deep.into_bytes(), &["not JSON", "recursion limit"]),
        (
            "invokingEvent nested 50 000 deep",
            serde_json::to_vec(&deep_invoking).unwrap(),
            &["invokingEvent is not JSON", "recursion limit"],
        ),
    ] {
        cases.push(Case { name, rule: s3, payload: Payload::Bytes(bytes), expect: Err(fragments) });
    }
    cases
}

/// `value.tap(|v| ...)`: edit in place, return the value.
trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_payload_fails_cleanly_without_reporting() {
    let moto = Moto::start();
    let (aws, counter) = workload(&moto.endpoint).await;
    let now = chrono::Utc::now();
    let mut failures = Vec::new();
    let cases = catalogue();
    let total = cases.len();
    for c in cases {
        counter.reset();
        let result = match c.payload {
            Payload::Json(v) => {
                // A panic in the handler is caught and reported as a failed case.
                AssertUnwindSafe(handler::handle(&aws, c.rule, v, now, None)).catch_unwind().await
            }
            Payload::Bytes(b) => {
                std::panic::catch_unwind(|| event::parse_bytes(&b).map(|_| handler::Outcome::default()))
            }
        };
        let outcome = match result {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(format!("{}: PANIC {what:?}", c.name));
                continue;
            }
            Ok(r) => r,
        };
        let calls = counter.snapshot();
        let puts = counter.get("config.PutEvaluations");
        let verdict = match (&c.expect, outcome) {
            (Expect::Err(fragments), Err(e)) => {
                let msg = e.to_string();
                let missing: Vec<_> = fragments.iter().filter(|f| !msg.contains(*f)).collect();
                if !missing.is_empty() {
                    Some(format!("error {msg:?} lacks {missing:?}"))
                } else if e.is_transient() {
                    Some(format!("a malformed event is not transient: {msg}"))
                } else if !calls.is_empty() {
                    Some(format!("made AWS calls before failing: {calls:?}"))
                } else {
                    None
                }
            }
            (Expect::NotCompliantOrErr(_, field), Err(e)) => {
                let msg = e.to_string();
                (!msg.contains(field) || !calls.is_empty())
                    .then(|| format!("error {msg:?} should name {field} and make no call ({calls:?})"))
            }
            (Expect::NotCompliantOrErr(fragment, _), Ok(o)) => {
                let ok = o.evaluations.len() == 1
                    && o.evaluations[0].compliance == Compliance::NonCompliant
                    && o.evaluations[0].annotation.contains(fragment)
                    && puts == 1;
                if ok {
                    println!("REVIEW: {}: a verdict drawn from absent data: {:?}", c.name, o.evaluations[0].annotation);
                }
                (!ok).then(|| format!("expected NON_COMPLIANT mentioning {fragment:?}, got {:?}", o.evaluations))
            }
            (Expect::NotApplicable(why), Ok(o)) => {
                let ok = o.evaluations.len() == 1
                    && o.evaluations[0].compliance == Compliance::NotApplicable
                    && o.evaluations[0].annotation.contains(why)
                    && puts == 1
                    && calls.len() == 1;
                (!ok).then(|| {
                    format!(
                        "expected one NOT_APPLICABLE {why:?} and one PutEvaluations, got {:?}, calls {calls:?}",
                        o.evaluations
                    )
                })
            }
            (_, Ok(o)) => {
                Some(format!("expected an error, got evaluations {:?} (PutEvaluations calls: {puts})", o.evaluations))
            }
            (Expect::NotApplicable(_), Err(e)) => Some(format!("expected NOT_APPLICABLE, got error {e}")),
        };
        if let Some(v) = verdict {
            failures.push(format!("{}: {v}", c.name));
        }
    }
    println!("{total} malformed payloads run; {} wrong", failures.len());
    assert!(failures.is_empty(), "{} of {total} cases wrong:\n{}", failures.len(), failures.join("\n"));
}

/// Regression test, once a bug (src/event.rs, `parse`): a wrong-typed `eventLeftScope` (a string, or null) fails
/// with "malformed event: not a Config rule event: invalid type: string \"true\",
/// expected a boolean", which does not name the field (serde_json::from_value reports no
/// path). Expected: "eventLeftScope must be a boolean". The invocation still fails
#[test]
fn wrong_typed_event_left_scope_is_named() {
    for bad in [json!("true"), Value::Null, json!(1)] {
        let e = event::parse(sample(S3_CHANGE).tap(|e| e["eventLeftScope"] = bad.clone())).unwrap_err();
        assert!(e.to_string().contains("eventLeftScope"), "{bad}: {e}");
    }
}

/// Regression test, once a bug (src/resource/mod.rs, `from_configuration_item`): a `configurationItemStatus` that
/// is not a string (a number, an object) is read as "OK" and the item is judged, where
/// every other field the code reads fails with "… must be a string". Expected: an error
#[test]
fn non_string_item_status_is_an_error() {
    let inv = event::parse(with_item(S3_CHANGE, |i| i["configurationItemStatus"] = json!({"deleted": true}))).unwrap();
    let event::Trigger::Change { item, .. } = &inv.trigger else { unreachable!() };
    let got = kms_rotation_guard::resource::from_configuration_item(item, rule::S3.resource_types);
    assert!(
        got.as_ref().is_err_and(|e| e.to_string().contains("configurationItemStatus")),
        "a non-string status should be an error naming it, got {got:?}"
    );
}
