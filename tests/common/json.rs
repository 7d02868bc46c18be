//! JSON generators for property and fuzz tests: random values weighted towards the field
//! names and strings the parsers look for, so they reach deep branches.
#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{json, Value};

/// Field names the code reads, so random objects often hit a real field.
pub const FIELD_NAMES: &[&str] = &[
    "invokingEvent",
    "ruleParameters",
    "resultToken",
    "accountId",
    "configRuleName",
    "eventLeftScope",
    "messageType",
    "configurationItem",
    "configurationItemSummary",
    "configurationItemCaptureTime",
    "configurationItemStatus",
    "notificationCreationTime",
    "awsAccountId",
    "awsRegion",
    "resourceType",
    "resourceId",
    "resourceName",
    "configuration",
    "supplementaryConfiguration",
    "ServerSideEncryptionConfiguration",
    "rules",
    "applyServerSideEncryptionByDefault",
    "sseAlgorithm",
    "kmsMasterKeyID",
    "storageEncrypted",
    "kmsKeyId",
    "sSEDescription",
    "ssedescription",
    "status",
    "kMSMasterKeyArn",
];

/// Strings that mean something to the parser.
pub const MEANINGFUL: &[&str] = &[
    "ConfigurationItemChangeNotification",
    "OversizedConfigurationItemChangeNotification",
    "ScheduledNotification",
    "AWS::S3::Bucket",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::DynamoDB::Table",
    "AWS::EC2::Instance",
    "OK",
    "ResourceDeleted",
    "ResourceNotRecorded",
    "ResourceDeletedNotRecorded",
    "2026-11-20T10:15:30.123Z",
    "2026-11-20",
    "TESTMODE",
    "123456789012",
    "eu-west-1",
    "cn-north-1",
    "aws:kms",
    "aws:kms:dsse",
    "AES256",
    "ENABLED",
    "DISABLED",
    "alias/prod-s3",
    "alias/aws/s3",
    "arn:aws:kms:eu-west-1:111111111111:alias/prod-s3",
    "1234abcd-12ab-34cd-56ef-1234567890ab",
    "{}",
    "[]",
    "{\"rules\": 5}",
    "null",
    "",
];

pub fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(MEANINGFUL).prop_map(str::to_string),
        3 => any::<String>(),
        1 => "\\PC{0,40}",
        1 => prop::collection::vec(any::<char>(), 300..1200).prop_map(String::from_iter),
    ]
    .boxed()
}

pub fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![3 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_string), 1 => any::<String>()]
}

pub fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        arb_string().prop_map(Value::String),
    ]
}

pub fn arb_json() -> BoxedStrategy<Value> {
    arb_leaf()
        .prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(arb_key(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}
