//! AWS Config invoking events → what to evaluate. No AWS calls here.
//!
//! The envelope is `aws_lambda_events`' `ConfigEvent`; its `invokingEvent` is a JSON
//! string parsed again here. Real events sometimes lack `eventLeftScope`, which the crate
//! requires, so it is defaulted to false before deserialising.

use aws_lambda_events::event::config::ConfigEvent;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Error;

/// Lambda payloads above this size are refused before parsing (Lambda's own limit for a
/// synchronous payload is 6 MB; Config's items are far smaller).
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// One invocation of a rule, parsed.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub envelope: ConfigEvent,
    pub trigger: Trigger,
    /// The account the rule runs in.
    pub account_id: String,
    pub result_token: String,
}

#[derive(Debug, Clone)]
pub enum Trigger {
    /// ConfigurationItemChangeNotification: one item, in full.
    Change { item: Value, captured: DateTime<Utc> },
    /// OversizedConfigurationItemChangeNotification: only a summary; the item is fetched.
    Oversized { summary: ItemSummary },
    /// ScheduledNotification: evaluate every resource of the rule's types.
    Periodic { notified: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemSummary {
    pub resource_type: String,
    pub resource_id: String,
    pub captured: DateTime<Utc>,
    pub status: String,
}

impl Invocation {
    pub fn rule_name(&self) -> Option<&str> {
        self.envelope.config_rule_name.as_deref()
    }
    pub fn left_scope(&self) -> bool {
        self.envelope.event_left_scope
    }
    pub fn rule_parameters(&self) -> Option<&str> {
        self.envelope.rule_parameters.as_deref()
    }
    /// TestMode results are validated by Config but not recorded.
    pub fn test_mode(&self) -> bool {
        self.result_token == "TESTMODE"
    }
}

/// Parses a raw Lambda payload.
pub fn parse_bytes(bytes: &[u8]) -> Result<Invocation, Error> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(Error::malformed(format!("event is {} bytes, over the {MAX_EVENT_BYTES}-byte limit", bytes.len())));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::malformed(format!("not JSON: {e}")))?;
    parse(v)
}

pub fn parse(mut payload: Value) -> Result<Invocation, Error> {
    let obj = payload.as_object_mut().ok_or_else(|| Error::malformed("the event must be a JSON object"))?;
    obj.entry("eventLeftScope").or_insert(Value::Bool(false));
    // Checked here so the error names the field; serde's would not.
    for field in [
        "invokingEvent",
        "ruleParameters",
        "resultToken",
        "accountId",
        "configRuleName",
        "configRuleArn",
        "configRuleId",
        "executionRoleArn",
        "version",
    ] {
        if let Some(v) = obj.get(field) {
            if !v.is_string() && !v.is_null() {
                return Err(Error::malformed(format!("{field} must be a string")));
            }
        }
    }
    if !obj.get("eventLeftScope").is_some_and(Value::is_boolean) {
        return Err(Error::malformed("eventLeftScope must be true or false"));
    }
    let envelope: ConfigEvent =
        serde_json::from_value(payload).map_err(|e| Error::malformed(format!("not a Config rule event: {e}")))?;
    let raw = envelope.invoking_event.as_deref().ok_or_else(|| Error::malformed("invokingEvent is missing"))?;
    let invoking: Value =
        serde_json::from_str(raw).map_err(|e| Error::malformed(format!("invokingEvent is not JSON: {e}")))?;
    let result_token = envelope
        .result_token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::malformed("resultToken is missing"))?;
    let message_type = str_field(&invoking, "messageType")?;
    let trigger = match message_type {
        "ConfigurationItemChangeNotification" => {
            let item = invoking
                .get("configurationItem")
                .filter(|v| v.is_object())
                .ok_or_else(|| Error::malformed("configurationItem is missing or not an object"))?
                .clone();
            let captured = time_field(&item, "configurationItemCaptureTime")?;
            Trigger::Change { item, captured }
        }
        "OversizedConfigurationItemChangeNotification" => {
            let s = invoking
                .get("configurationItemSummary")
                .filter(|v| v.is_object())
                .ok_or_else(|| Error::malformed("configurationItemSummary is missing or not an object"))?;
            Trigger::Oversized {
                summary: ItemSummary {
                    resource_type: str_field(s, "resourceType")?.to_string(),
                    resource_id: str_field(s, "resourceId")?.to_string(),
                    captured: time_field(s, "configurationItemCaptureTime")?,
                    status: str_field(s, "configurationItemStatus")?.to_string(),
                },
            }
        }
        "ScheduledNotification" => Trigger::Periodic { notified: time_field(&invoking, "notificationCreationTime")? },
        other => {
            return Err(Error::malformed(format!(
                "unknown messageType {:?} (expected ConfigurationItemChangeNotification, \
                 OversizedConfigurationItemChangeNotification or ScheduledNotification)",
                crate::error::truncate_chars(other, 60)
            )))
        }
    };
    let account_id = envelope
        .account_id
        .clone()
        .or_else(|| invoking.get("awsAccountId").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| Error::malformed("accountId is missing"))?;
    Ok(Invocation { envelope, trigger, account_id, result_token })
}

pub(crate) fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, Error> {
    match v.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(Error::malformed(format!("{name} is missing"))),
        Some(_) => Err(Error::malformed(format!("{name} must be a string"))),
    }
}

pub(crate) fn time_field(v: &Value, name: &str) -> Result<DateTime<Utc>, Error> {
    let s = str_field(v, name)?;
    parse_time(s).ok_or_else(|| {
        Error::malformed(format!("{name} is not an ISO 8601 time: {:?}", crate::error::truncate_chars(s, 40)))
    })
}

/// Config writes times as RFC 3339 with milliseconds (`2026-11-23T10:00:00.123Z`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}
