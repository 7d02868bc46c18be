//! Events of an AWS Config organization rule, as Config sends them to the one function for
//! each member account (tests/organization.rs, tests/key_cache.rs).
#![allow(dead_code)]

use serde_json::{json, Value};

use super::REGION;

/// The event for `account` around `invoking`, with the rule's `params`.
pub fn event(account: &str, invoking: Value, params: &Value) -> Value {
    json!({
        "version": "1.0",
        "invokingEvent": invoking.to_string(),
        "ruleParameters": params.to_string(),
        "resultToken": "TESTMODE",
        "eventLeftScope": false,
        "executionRoleArn": format!("arn:aws:iam::{account}:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig"),
        "configRuleArn": format!("arn:aws:config:{REGION}:{account}:config-rule/aws-service-rule/config-multiaccountsetup.amazonaws.com/config-rule-k2x4"),
        "configRuleName": "OrgConfigRule-kms-rotation-s3-k2x4",
        "accountId": account,
    })
}

/// The periodic (ScheduledNotification) event for `account`.
pub fn periodic(account: &str, params: &Value) -> Value {
    let invoking = json!({
        "awsAccountId": account, "notificationCreationTime": chrono::Utc::now().to_rfc3339(),
        "messageType": "ScheduledNotification", "recordVersion": "1.0",
    });
    event(account, invoking, params)
}
