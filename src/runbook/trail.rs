//! CloudTrail's record of calls on a key: the watcher's input (an EventBridge event carries
//! one record as `detail`) and the campaign's and retirement's evidence (LookupEvents).
//!
//! [`KeyCall::from_record`] and the classifiers are pure; [`scan_calls`] is the one
//! LookupEvents reader. The record shape is CloudTrail's for KMS (KMS Developer Guide,
//! "Logging AWS KMS API calls with AWS CloudTrail", e.g. the Decrypt entries): `eventName`,
//! `errorCode`, `userIdentity.accountId`/`arn`, `requestParameters.encryptionContext`,
//! `resources[].ARN`. For a call from another account the key owner's copy of the record
//! names the caller in `userIdentity.accountId` and the owner in `recipientAccountId`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{aws_err, RunbookError};
use crate::aws::Aws;
use crate::rotation::PROBE_CONTEXT;

/// One KMS call as CloudTrail recorded it (plain data).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCall {
    pub event_id: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// `Decrypt`, `GenerateDataKey`, …
    pub name: String,
    /// The KMS keys the call named (`resources[].ARN` of type `AWS::KMS::Key`; else the
    /// request's `keyId`/`destinationKeyId` when they are ARNs).
    pub keys: Vec<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `userIdentity.accountId`: the account that made the call.
    pub caller_account: Option<String>,
    /// `userIdentity.arn` (or the invoking service).
    pub principal: Option<String>,
    pub region: Option<String>,
    /// The request's encryption context (`requestParameters.encryptionContext`).
    pub encryption_context: BTreeMap<String, String>,
}

/// The calls whose failure means a workload could not use its key (issue 22): Decrypt,
/// GenerateDataKey*, ReEncrypt* and CreateGrant (how RDS, DynamoDB and EBS get to a key).
pub fn watched(name: &str) -> bool {
    name == "Decrypt" || name == "CreateGrant" || name.starts_with("GenerateDataKey") || name.starts_with("ReEncrypt")
}

/// The calls that use a key's material, plus CreateGrant (a service preparing to): what
/// retirement needs to see none of, successful, for its grace period.
pub fn cryptographic(name: &str) -> bool {
    watched(name) || matches!(name, "Encrypt" | "Sign" | "Verify" | "GenerateMac" | "VerifyMac")
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_string)
}

impl KeyCall {
    /// The call a CloudTrail record describes; `None` when it is not a KMS call.
    pub fn from_record(record: &Value) -> Option<KeyCall> {
        if text(record, &["eventSource"]).as_deref() != Some("kms.amazonaws.com") {
            return None;
        }
        let name = text(record, &["eventName"])?;
        let mut keys: Vec<String> = record
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r.get("type").and_then(Value::as_str).is_none_or(|t| t == "AWS::KMS::Key"))
            .filter_map(|r| r.get("ARN").or_else(|| r.get("arn")).and_then(Value::as_str).map(str::to_string))
            .collect();
        if keys.is_empty() {
            for field in ["keyId", "destinationKeyId", "sourceKeyId"] {
                if let Some(k) = text(record, &["requestParameters", field]).filter(|k| k.contains(":key/")) {
                    keys.push(k);
                }
            }
        }
        keys.dedup();
        let encryption_context = record
            .pointer("/requestParameters/encryptionContext")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        Some(KeyCall {
            event_id: text(record, &["eventID"]),
            time: text(record, &["eventTime"]).and_then(|t| crate::event::parse_time(&t)),
            name,
            keys,
            error_code: text(record, &["errorCode"]).filter(|c| !c.is_empty()),
            error_message: text(record, &["errorMessage"]),
            caller_account: text(record, &["userIdentity", "accountId"]),
            principal: text(record, &["userIdentity", "arn"]).or_else(|| text(record, &["userIdentity", "invokedBy"])),
            region: text(record, &["awsRegion"]),
            encryption_context,
        })
    }

    /// The rotation's own verification probe: its encryption context, from the key's own
    /// account. The account matters: any caller can put that context on a request, and a
    /// workload's failure must never be hidden behind it.
    pub fn is_probe(&self) -> bool {
        let (k, v) = PROBE_CONTEXT;
        let own = self.keys.first().and_then(|arn| arn.split(':').nth(4));
        self.encryption_context.get(k).map(String::as_str) == Some(v)
            && self.caller_account.is_some()
            && self.caller_account.as_deref() == own
    }

    /// A failed use of the key by a workload: what the watcher alerts on and the soak stops on.
    pub fn is_failure(&self) -> bool {
        self.error_code.is_some() && watched(&self.name) && !self.is_probe()
    }

    /// A successful use of the key's material (not our probe): what retirement must not see.
    pub fn is_successful_use(&self) -> bool {
        self.error_code.is_none() && cryptographic(&self.name) && !self.is_probe()
    }

    pub fn names_key(&self, key_arn: &str) -> bool {
        self.keys.iter().any(|k| k == key_arn)
    }

    /// One line for a person: when, what, who, why it failed.
    pub fn line(&self) -> String {
        format!(
            "{} {} by {} (account {}){}",
            self.time.map(super::stamp).unwrap_or_else(|| "(time unknown)".into()),
            self.name,
            self.principal.as_deref().unwrap_or("an unknown principal"),
            self.caller_account.as_deref().unwrap_or("unknown"),
            match (&self.error_code, &self.error_message) {
                (Some(c), Some(m)) => format!(" failed: {c}: {m}"),
                (Some(c), None) => format!(" failed: {c}"),
                _ => String::new(),
            }
        )
    }
}

/// LookupEvents allows two requests per second per account and Region (CloudTrail API
/// reference, LookupEvents): pages are paced to stay under it.
const PAGE_PACE: Duration = Duration::from_millis(550);
/// Event history covers 90 days (LookupEvents reference).
pub const HISTORY_DAYS: i64 = 90;
/// At most this many pages (50 events each) per question: beyond it a key is too busy to
/// read back from event history, and the question is answered "unknown", never guessed.
pub const MAX_PAGES: usize = 200;

/// Reads the CloudTrail event history of `key_arn` from `since` to `until`, newest first,
/// handing each KMS call to `visit` until it says stop. Returns how many were read.
pub async fn scan_calls(
    aws: &Aws,
    key_arn: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    mut visit: impl FnMut(KeyCall) -> ControlFlow<()>,
) -> Result<usize, RunbookError> {
    let attribute = LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::ResourceName)
        .attribute_value(key_arn)
        .build()
        .map_err(|e| RunbookError::Input(format!("CloudTrail lookup attribute: {e}")))?;
    let mut token: Option<String> = None;
    let mut seen = 0;
    for page in 0..MAX_PAGES {
        if page > 0 {
            tokio::time::sleep(PAGE_PACE).await;
        }
        let out = aws
            .cloudtrail()
            .lookup_events()
            .lookup_attributes(attribute.clone())
            .start_time(aws_smithy_types::DateTime::from_secs(since.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(until.timestamp()))
            .max_results(50)
            .set_next_token(token)
            .send()
            .await
            .map_err(aws_err("cloudtrail:LookupEvents"))?;
        for e in out.events() {
            let Some(raw) = e.cloud_trail_event() else { continue };
            let Ok(record) = serde_json::from_str::<Value>(raw) else {
                tracing::warn!(event = e.event_id().unwrap_or("?"), "CloudTrail returned an event that is not JSON");
                continue;
            };
            if let Some(call) = KeyCall::from_record(&record) {
                seen += 1;
                if visit(call).is_break() {
                    return Ok(seen);
                }
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(seen);
        }
    }
    Err(RunbookError::Refused(format!(
        "more than {} CloudTrail events on {key_arn} since {}: too busy to read back from event history; \
         use the watcher's alarm (KeyUseFailures) for this key",
        MAX_PAGES * 50,
        super::stamp(since)
    )))
}

/// The failures on `key_arn` since `since` (the soak's question).
pub async fn failures(
    aws: &Aws,
    key_arn: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<KeyCall>, RunbookError> {
    let mut found = Vec::new();
    scan_calls(aws, key_arn, since, until, |c| {
        if c.is_failure() {
            found.push(c);
        }
        ControlFlow::Continue(())
    })
    .await?;
    found.sort_by_key(|c| c.time);
    Ok(found)
}

/// The newest successful use of `key_arn` since `since`, if any (retirement's question).
pub async fn last_successful_use(
    aws: &Aws,
    key_arn: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<KeyCall>, RunbookError> {
    let mut found = None;
    scan_calls(aws, key_arn, since, until, |c| {
        if c.is_successful_use() && c.names_key(key_arn) {
            found = Some(c);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    /// A Decrypt record in the shape of the KMS Developer Guide's CloudTrail examples.
    fn decrypt(account: &str, error: Option<&str>, context: Value) -> Value {
        let mut r = json!({
            "eventVersion": "1.11",
            "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:app",
                "arn": format!("arn:aws:sts::{account}:assumed-role/app/i-0abc"), "accountId": account},
            "eventTime": "2026-12-04T10:00:00Z",
            "eventSource": "kms.amazonaws.com",
            "eventName": "Decrypt",
            "awsRegion": "eu-west-1",
            "sourceIPAddress": "192.0.2.0",
            "userAgent": "aws-sdk-java",
            "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": context},
            "responseElements": null,
            "requestID": "r-1", "eventID": "e-1", "readOnly": true,
            "resources": [{"accountId": "111111111111", "type": "AWS::KMS::Key", "ARN": KEY}],
            "eventType": "AwsApiCall", "managementEvent": true,
            "recipientAccountId": "111111111111", "eventCategory": "Management"
        });
        if let Some(code) = error {
            r["errorCode"] = json!(code);
            r["errorMessage"] = json!("The ciphertext refers to a customer master key that does not exist");
        }
        r
    }

    #[test]
    fn a_failed_decrypt_from_a_workload_is_a_failure_naming_caller_and_key() {
        let c =
            KeyCall::from_record(&decrypt("222222222222", Some("IncorrectKeyException"), json!({"app": "x"}))).unwrap();
        assert!(c.is_failure());
        assert!(!c.is_successful_use());
        assert_eq!(c.caller_account.as_deref(), Some("222222222222"));
        assert_eq!(c.keys, vec![KEY.to_string()]);
        assert!(c.line().contains("IncorrectKeyException"), "{}", c.line());
    }

    #[test]
    fn success_is_use_not_failure() {
        let c = KeyCall::from_record(&decrypt("222222222222", None, json!({}))).unwrap();
        assert!(!c.is_failure());
        assert!(c.is_successful_use());
    }

    #[test]
    fn the_probe_is_ignored_only_from_the_keys_own_account() {
        let probe = json!({"kms-rotation-guard:probe": "verification"});
        let own = KeyCall::from_record(&decrypt("111111111111", Some("InvalidCiphertextException"), probe.clone()));
        assert!(!own.unwrap().is_failure(), "our own probe is not a workload failure");
        let spoofed = KeyCall::from_record(&decrypt("222222222222", Some("InvalidCiphertextException"), probe));
        assert!(spoofed.unwrap().is_failure(), "a workload cannot hide a failure behind the probe's context");
    }

    #[test]
    fn other_services_and_calls_are_not_watched() {
        let mut r = decrypt("222222222222", Some("AccessDenied"), json!({}));
        r["eventSource"] = json!("s3.amazonaws.com");
        assert!(KeyCall::from_record(&r).is_none());
        let mut r = decrypt("222222222222", Some("AccessDenied"), json!({}));
        r["eventName"] = json!("DescribeKey");
        assert!(!KeyCall::from_record(&r).unwrap().is_failure());
        for name in ["GenerateDataKeyWithoutPlaintext", "ReEncrypt", "CreateGrant", "GenerateDataKeyPair"] {
            assert!(watched(name), "{name}");
        }
    }
}
