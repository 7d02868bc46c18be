//! The watcher: a failed use of a guarded key after a rotation, as an alert and a metric.
//!
//! In AWS, an EventBridge rule in the security account (security-account.yaml, `Watcher*`)
//! sends CloudTrail's records of KMS calls that carry an `errorCode` (Decrypt,
//! GenerateDataKey*, ReEncrypt*, CreateGrant) to the `key-use-watcher` Lambda, which calls
//! [`handle`]: one alert to the security topic with the alias, the days since the last
//! rotation, the calling account and the principal; one embedded-metric log line
//! (`KmsRotationGuard/KeyUseFailures`) that the alarm watches. The rotation's own
//! verification probe is ignored ([`super::trail::KeyCall::is_probe`]).
//!
//! [`judge`] is pure (event → ignore or alert); [`handle`] reads the key once (the
//! evaluators' lookup) and publishes. An alert is never lost to a failed enrichment: a key
//! that cannot be read is reported with what is unknown.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::trail::KeyCall;
use super::{aws_err, RunbookError, GUARD_TAG};
use crate::aws::Aws;
use crate::key::lookup::KeyReader;
use crate::key::{Fact, Home, KeyLookup, KeyRef};
use crate::params::RuleParams;

/// CloudWatch namespace and metric of the watcher (the alarm in security-account.yaml).
pub const METRIC_NAMESPACE: &str = "KmsRotationGuard";
pub const METRIC_NAME: &str = "KeyUseFailures";

/// What the watcher does with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Ignore(String),
    Alert(Box<KeyCall>),
}

/// The CloudTrail record in an EventBridge event (`detail`), or the record itself.
fn record(event: &Value) -> &Value {
    match event.get("detail") {
        Some(d) if d.is_object() => d,
        _ => event,
    }
}

/// Pure: does this event call for an alert?
pub fn judge(event: &Value) -> Judgement {
    let Some(call) = KeyCall::from_record(record(event)) else {
        return Judgement::Ignore("not a CloudTrail record of a KMS call".into());
    };
    if call.error_code.is_none() {
        return Judgement::Ignore(format!("{} succeeded", call.name));
    }
    if !super::trail::watched(&call.name) {
        return Judgement::Ignore(format!("{} is not a watched call", call.name));
    }
    if call.is_probe() {
        return Judgement::Ignore("the rotation's own verification probe".into());
    }
    if call.keys.is_empty() {
        // Nothing to enrich, but a failure all the same.
        tracing::warn!(event = ?call.event_id, "a failed KMS call names no key");
    }
    Judgement::Alert(Box::new(call))
}

/// One alert: what failed, on which key, for whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub key_arn: Option<String>,
    pub aliases: Vec<String>,
    /// Whole days since the key's material last changed (tag or KMS record); `None`: unknown.
    pub days_since_rotation: Option<i64>,
    pub call: KeyCall,
    /// What could not be read about the key, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl Alert {
    /// SNS subjects are at most 100 ASCII characters.
    pub fn subject(&self) -> String {
        let key = self.aliases.first().cloned().or_else(|| self.key_arn.as_deref().map(short)).unwrap_or_default();
        let s =
            format!("KMS {} failed on {key} ({})", self.call.name, self.call.error_code.as_deref().unwrap_or("error"));
        s.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(100).collect()
    }

    pub fn message(&self) -> String {
        let mut m = String::new();
        let aliases = if self.aliases.is_empty() { "(none)".to_string() } else { self.aliases.join(", ") };
        m.push_str(&format!("A workload could not use a guarded KMS key.\n\n{}\n\n", self.call.line()));
        m.push_str(&format!(
            "key:                  {}\n",
            self.key_arn.as_deref().unwrap_or("(not named in the record)")
        ));
        m.push_str(&format!("alias:                {aliases}\n"));
        m.push_str(&format!(
            "days since rotation:  {}\n",
            self.days_since_rotation.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into())
        ));
        m.push_str(&format!("calling account:      {}\n", self.call.caller_account.as_deref().unwrap_or("unknown")));
        m.push_str(&format!("principal:            {}\n", self.call.principal.as_deref().unwrap_or("unknown")));
        m.push_str(&format!("region:               {}\n", self.call.region.as_deref().unwrap_or("unknown")));
        m.push_str(&format!("CloudTrail event id:  {}\n", self.call.event_id.as_deref().unwrap_or("unknown")));
        if let Some(u) = &self.unknown {
            m.push_str(&format!("not known:            {u}\n"));
        }
        m.push_str(
            "\nAfter an alias-swap rotation: `kms-rotation-guard rollback --key <alias>` points the alias back. \
             After an in-place rotation every older ciphertext still decrypts: look at the caller's grants and \
             key policy. See docs/runbook.md.\n",
        );
        m
    }

    /// The CloudWatch embedded-metric-format line: one failure, by service and by key. Lambda
    /// sends stdout to CloudWatch Logs, which turns the line into the metric.
    pub fn metric_line(&self, now: DateTime<Utc>) -> String {
        json!({
            "_aws": {
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [["Service"], ["Service", "KeyId"]],
                    "Metrics": [{"Name": METRIC_NAME, "Unit": "Count"}]
                }]
            },
            "Service": "kms-rotation-guard",
            "KeyId": self.key_arn.as_deref().map(short).unwrap_or_else(|| "unknown".into()),
            METRIC_NAME: 1,
            "eventName": self.call.name,
            "errorCode": self.call.error_code,
            "callerAccount": self.call.caller_account,
        })
        .to_string()
    }
}

fn short(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// The watcher's settings (the function's environment).
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// KRG_ALERT_TOPIC_ARN: the security account's topic.
    pub topic_arn: String,
    /// KRG_KEY_TAG_VALUE: only keys tagged `kms-rotation-guard=<value>` are watched; `None`: all.
    pub guard_value: Option<String>,
    /// KRG_ROTATION_TAG_KEY: the rotation date tag.
    pub rotation_tag_key: String,
}

/// What [`handle`] did, as the Lambda's response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handled {
    pub alerted: bool,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Where alerts go: SNS in AWS, a list in tests.
pub trait AlertSink {
    fn send(&self, alert: &Alert) -> impl std::future::Future<Output = Result<Option<String>, RunbookError>> + Send;
}

/// SNS Publish to the security topic.
pub struct SnsTopic<'a> {
    pub aws: &'a Aws,
    pub topic_arn: String,
}

impl AlertSink for SnsTopic<'_> {
    async fn send(&self, alert: &Alert) -> Result<Option<String>, RunbookError> {
        let out = self
            .aws
            .sns()
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(alert.subject())
            .message(alert.message())
            .send()
            .await
            .map_err(aws_err("sns:Publish"))?;
        Ok(out.message_id().map(str::to_string))
    }
}

/// One event: judge it, read the key once, alert, print the metric line.
pub async fn handle(
    aws: &Aws,
    settings: &WatchSettings,
    sink: &impl AlertSink,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Handled, RunbookError> {
    let call = match judge(event) {
        Judgement::Ignore(reason) => return Ok(Handled { alerted: false, reason, message_id: None }),
        Judgement::Alert(call) => *call,
    };
    let key_arn = call.keys.first().cloned();
    let mut alert = Alert { key_arn: key_arn.clone(), aliases: vec![], days_since_rotation: None, call, unknown: None };
    if let Some(arn) = &key_arn {
        match enrich(aws, settings, arn, now).await {
            Ok(Enriched::Guarded { aliases, days }) => {
                alert.aliases = aliases;
                alert.days_since_rotation = days;
            }
            Ok(Enriched::NotGuarded(why)) => {
                return Ok(Handled { alerted: false, reason: why, message_id: None });
            }
            Err(e) => {
                // The failure is the news; what we could not add to it is said, not hidden.
                tracing::warn!(key = %arn, error = %e, "could not read the key for the alert");
                alert.unknown = Some(format!("alias and rotation age ({e})"));
            }
        }
    }
    // The metric first: it costs nothing and the alarm must count even if SNS fails.
    println!("{}", alert.metric_line(now));
    let message_id = sink.send(&alert).await?;
    tracing::warn!(
        target: "audit",
        key = alert.key_arn.as_deref().unwrap_or("unknown"),
        event = %alert.call.name,
        error = alert.call.error_code.as_deref().unwrap_or(""),
        caller_account = alert.call.caller_account.as_deref().unwrap_or("unknown"),
        "failed use of a guarded key: alert sent"
    );
    Ok(Handled { alerted: true, reason: alert.subject(), message_id })
}

enum Enriched {
    Guarded { aliases: Vec<String>, days: Option<i64> },
    NotGuarded(String),
}

async fn enrich(
    aws: &Aws,
    settings: &WatchSettings,
    key_arn: &str,
    now: DateTime<Utc>,
) -> Result<Enriched, RunbookError> {
    let reference = KeyRef::parse(key_arn).map_err(|e| RunbookError::Input(e.to_string()))?;
    let account = key_arn.split(':').nth(4).unwrap_or_default().to_string();
    let params = RuleParams { rotation_tag_key: settings.rotation_tag_key.clone(), ..RuleParams::default() };
    let reader = KeyReader::new(aws, &params, &account);
    let home = Home::new(aws.region(), account.clone());
    let facts = match reader.look_up(&reference, &home).await?.as_ref() {
        KeyLookup::Found(f) => (**f).clone(),
        KeyLookup::Denied(d) => {
            // The watcher may read guarded keys only: a denial is a key outside the guard.
            return Ok(Enriched::NotGuarded(format!(
                "{key_arn} is not readable by the watcher ({}): not a guarded key",
                d.action
            )));
        }
        other => return Err(RunbookError::Refused(format!("{key_arn}: {other:?}"))),
    };
    if let (Some(value), Fact::Known(tags)) = (&settings.guard_value, &facts.tags) {
        if tags.get(GUARD_TAG) != Some(value) {
            return Ok(Enriched::NotGuarded(format!("{key_arn} is not tagged {GUARD_TAG}={value}")));
        }
    }
    let aliases = aliases_of(aws, &facts.key_id).await?;
    let days = super::inventory::material_date(&facts, &settings.rotation_tag_key, now)
        .map(|d| now.signed_duration_since(d).num_days().max(0));
    Ok(Enriched::Guarded { aliases, days })
}

/// The aliases of one key (ListAliases with KeyId).
pub async fn aliases_of(aws: &Aws, key_id: &str) -> Result<Vec<String>, RunbookError> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let out = aws
            .kms()
            .list_aliases()
            .key_id(key_id)
            .set_marker(marker)
            .send()
            .await
            .map_err(aws_err("kms:ListAliases"))?;
        names.extend(out.aliases().iter().filter_map(|a| a.alias_name().map(str::to_string)));
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok(names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail: Value) -> Value {
        json!({"version": "0", "id": "x", "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms",
               "account": "111111111111", "time": "2026-12-04T10:00:00Z", "region": "eu-west-1",
               "resources": [], "detail": detail})
    }

    fn record(error: Option<&str>) -> Value {
        let mut r = json!({
            "eventSource": "kms.amazonaws.com", "eventName": "GenerateDataKey", "eventTime": "2026-12-04T10:00:00Z",
            "userIdentity": {"accountId": "222222222222", "arn": "arn:aws:sts::222222222222:assumed-role/app/x"},
            "requestParameters": {"keySpec": "AES_256"},
            "resources": [{"type": "AWS::KMS::Key", "ARN": "arn:aws:kms:eu-west-1:111111111111:key/k1"}]
        });
        if let Some(e) = error {
            r["errorCode"] = json!(e);
        }
        r
    }

    #[test]
    fn judges_the_eventbridge_envelope() {
        assert!(matches!(judge(&event(record(Some("KMSInvalidStateException")))), Judgement::Alert(_)));
        assert!(matches!(judge(&event(record(None))), Judgement::Ignore(_)));
        assert!(matches!(judge(&json!({"detail": {}})), Judgement::Ignore(_)));
    }

    #[test]
    fn the_alert_names_alias_age_account_and_principal_and_the_metric_counts_one() {
        let Judgement::Alert(call) = judge(&event(record(Some("DisabledException")))) else { panic!() };
        let a = Alert {
            key_arn: Some("arn:aws:kms:eu-west-1:111111111111:key/k1".into()),
            aliases: vec!["alias/prod-s3".into()],
            days_since_rotation: Some(3),
            call: *call,
            unknown: None,
        };
        let m = a.message();
        for want in
            ["alias/prod-s3", "days since rotation:  3", "222222222222", "assumed-role/app/x", "DisabledException"]
        {
            assert!(m.contains(want), "{want} missing from {m}");
        }
        assert!(a.subject().len() <= 100);
        let metric: Value = serde_json::from_str(&a.metric_line(Utc::now())).unwrap();
        assert_eq!(metric[METRIC_NAME], 1);
        assert_eq!(metric["_aws"]["CloudWatchMetrics"][0]["Namespace"], METRIC_NAMESPACE);
        assert_eq!(metric["KeyId"], "k1");
    }
}
