//! The request contract: what reaches the remediation function, parsed and checked before
//! anything is looked up. No AWS call here: a bad payload is refused as such, whatever the
//! function's settings or the key's state.
//!
//! Two ways in (issue 20): a workload account's request arrives through the security
//! account's request bus as an EventBridge event whose `detail` is the request and whose
//! `account` EventBridge sets (the sender cannot); an operator's request is the payload of a
//! direct invocation, which only principals of the security account can make (the function's
//! only resource-policy grant is to EventBridge). [`incoming`] tells them apart.
//! tests/template holds both Automation documents to these fields.

use serde_json::Value;

use super::policy::{Ask, Requester};
use super::{clip, RemediationError};

/// The EventBridge `source` of a workload's request (template.yaml's document, the bus
/// policy and the request rule of security-account.yaml).
pub const WORKLOAD_SOURCE: &str = "kms-rotation-guard.workload";
/// The EventBridge `detail-type` of a workload's request.
pub const REQUEST_DETAIL_TYPE: &str = "Rotation Requested";

/// Keys of EventBridge's envelope: a payload with any of them is read as a bus event.
const ENVELOPE_KEYS: [&str; 4] = ["detail-type", "source", "account", "detail"];

/// Whether a payload came through the request bus (an EventBridge event).
pub fn is_bus_event(payload: &Value) -> bool {
    ENVELOPE_KEYS.iter().any(|k| payload.get(k).is_some())
}

/// Who asks, and the request itself. A bus event must be a workload request (its source and
/// detail-type), from a 12-digit `account`, with an object `detail`; anything else through
/// the bus is malformed. Any other payload is an operator's request.
pub fn incoming(payload: Value) -> Result<(Requester, Value), RemediationError> {
    if !is_bus_event(&payload) {
        return Ok((Requester::Operator, payload));
    }
    let bad = |m: String| Err(RemediationError::MalformedPayload(format!("request bus event: {m}")));
    let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if text("source") != WORKLOAD_SOURCE || text("detail-type") != REQUEST_DETAIL_TYPE {
        return bad(format!(
            "source {:?} / detail-type {:?} is not a rotation request ({WORKLOAD_SOURCE} / {REQUEST_DETAIL_TYPE})",
            clip(&text("source"), 64),
            clip(&text("detail-type"), 64)
        ));
    }
    let account = text("account");
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return bad(format!("account {:?} is not a 12-digit account id", clip(&account, 40)));
    }
    match payload.get("detail") {
        Some(d @ Value::Object(_)) => Ok((Requester::Workload { account }, d.clone())),
        _ => bad("detail is not a JSON object (the request)".into()),
    }
}

/// The resource family a remediation is for (contracts.md `resourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Rds,
    DynamoDb,
    S3,
}

impl std::str::FromStr for ResourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rds" | "aws::rds::dbinstance" | "aws::rds::dbcluster" => Ok(ResourceKind::Rds),
            "dynamodb" | "aws::dynamodb::table" => Ok(ResourceKind::DynamoDb),
            "s3" | "aws::s3::bucket" => Ok(ResourceKind::S3),
            other => Err(format!("unknown resourceType {:?}: use rds, dynamodb or s3", clip(other, 40))),
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::Rds => "rds",
            ResourceKind::DynamoDb => "dynamodb",
            ResourceKind::S3 => "s3",
        })
    }
}

/// What the SSM Automation document sends (contracts.md; security-account.yaml).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemediationRequest {
    /// `rotate` (default) or `reimport`.
    #[serde(default)]
    pub action: Option<String>,
    /// Alias, alias ARN, key id or key ARN of the key to rotate.
    pub key_id: String,
    /// The NON_COMPLIANT resource's Config resourceId, for the audit log.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// `rds`, `dynamodb` or `s3`: alias-swap is refused for rds and dynamodb.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// `in-place` (default) or `alias-swap`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// The rule's InputParameters as Config passes them: a JSON string. Empty: defaults.
    #[serde(default)]
    pub rule_parameters: Option<String>,
    /// Reimport only: the material to import again (absent: every one that needs it).
    #[serde(default)]
    pub key_material_id: Option<String>,
}

/// What to do, from a [`RemediationRequest`] that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemediationAction {
    Rotate,
    Reimport { key_material_id: Option<String> },
}

/// A validated request: every field parsed, nothing looked up yet.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub action: RemediationAction,
    pub key_id: String,
    pub resource_id: Option<String>,
    pub resource_kind: Option<ResourceKind>,
    /// The strategy the request named, if it named one (the policy decides otherwise).
    pub strategy: Option<crate::rotation::Strategy>,
    /// The request's `ruleParameters`, checked to be the rule's parameters; the security
    /// account's policy decides what of them it honours.
    pub rule_parameters: Option<String>,
}

impl ValidRequest {
    /// What the request asks of the security account's policy.
    pub fn ask(&self) -> Ask {
        Ask {
            reimport: matches!(self.action, RemediationAction::Reimport { .. }),
            strategy: self.strategy,
            rule_parameters: self.rule_parameters.clone(),
        }
    }
}

impl RemediationRequest {
    /// Parses and checks a payload; every failure is a [`RemediationError::MalformedPayload`].
    pub fn parse(payload: Value) -> Result<ValidRequest, RemediationError> {
        const FIELDS: &str = "action, keyId, resourceId, resourceType, strategy, ruleParameters, keyMaterialId";
        let bad = RemediationError::MalformedPayload;
        if !payload.is_object() {
            return Err(bad(format!("expected a JSON object with {FIELDS}")));
        }
        let r: RemediationRequest =
            serde_json::from_value(payload).map_err(|e| bad(format!("{e} (fields: {FIELDS})")))?;
        let action = match r.action.as_deref().map(str::trim).unwrap_or("rotate") {
            "rotate" | "" => {
                if r.key_material_id.is_some() {
                    return Err(bad("keyMaterialId is only for action \"reimport\"".into()));
                }
                RemediationAction::Rotate
            }
            "reimport" => RemediationAction::Reimport {
                key_material_id: r.key_material_id.map(|m| m.trim().to_string()).filter(|m| !m.is_empty()),
            },
            other => return Err(bad(format!("unknown action {:?}: use rotate or reimport", clip(other, 40)))),
        };
        let strategy: Option<crate::rotation::Strategy> = r
            .strategy
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| bad(format!("unknown strategy {:?}: use in-place or alias-swap", clip(s, 40))))
            })
            .transpose()?;
        let resource_kind =
            r.resource_type.as_deref().filter(|t| !t.trim().is_empty()).map(str::parse).transpose().map_err(bad)?;
        let key_id = r.key_id.trim().to_string();
        if !key_id.is_empty() {
            crate::key::KeyRef::parse(&key_id).map_err(|e| bad(format!("keyId: {e}")))?;
        } else if r.resource_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
            return Err(bad("keyId is empty and no resourceId says which resource has no key".into()));
        }
        let raw = r.rule_parameters.as_deref().map(str::trim).unwrap_or("");
        crate::params::RuleParams::parse(Some(raw))
            .map_err(|e| bad(format!("ruleParameters (the rule's InputParameters as a JSON string): {e}")))?;
        Ok(ValidRequest {
            action,
            key_id,
            resource_id: r.resource_id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            resource_kind,
            strategy,
            rule_parameters: Some(raw.to_string()).filter(|r| !r.is_empty()),
        })
    }
}
