//! The request contract: what the SSM Automation document sends the remediation function
//! (security-account.yaml; tests/template.rs holds the fields to the document), parsed and
//! checked before anything is looked up. No AWS call here: a bad payload is refused as
//! such, whatever the function's settings or the key's state.

use serde_json::Value;

use super::{clip, RemediationError};

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
    pub strategy: crate::rotation::Strategy,
    pub params: crate::params::RuleParams,
    /// `rotationTagKey` was given in ruleParameters (else the function's KRG_ROTATION_TAG_KEY applies).
    pub tag_key_given: bool,
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
        let strategy: crate::rotation::Strategy =
            r.strategy.as_deref().map(str::trim).unwrap_or("in-place").parse().map_err(|_| {
                bad(format!(
                    "unknown strategy {:?}: use in-place or alias-swap",
                    clip(r.strategy.as_deref().unwrap_or_default(), 40)
                ))
            })?;
        let resource_kind =
            r.resource_type.as_deref().filter(|t| !t.trim().is_empty()).map(str::parse).transpose().map_err(bad)?;
        let key_id = r.key_id.trim().to_string();
        if !key_id.is_empty() {
            crate::key::KeyRef::parse(&key_id).map_err(|e| bad(format!("keyId: {e}")))?;
        } else if r.resource_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
            return Err(bad("keyId is empty and no resourceId says which resource has no key".into()));
        }
        let raw = r.rule_parameters.as_deref().map(str::trim).unwrap_or("");
        let params = crate::params::RuleParams::parse(Some(raw))
            .map_err(|e| bad(format!("ruleParameters (the rule's InputParameters as a JSON string): {e}")))?;
        let tag_key_given = serde_json::from_str::<Value>(raw).ok().is_some_and(|v| v.get("rotationTagKey").is_some());
        Ok(ValidRequest {
            action,
            key_id,
            resource_id: r.resource_id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            resource_kind,
            strategy,
            params,
            tag_key_given,
        })
    }
}
