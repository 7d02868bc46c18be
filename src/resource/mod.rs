//! Resources and how they are protected. One file per family extracts the key reference
//! from a configuration item and enumerates the family for periodic sweeps.
//!
//! No verdict here: a resource says how it is protected; `verdict` judges that.

pub mod dynamodb;
pub mod rds;
pub mod s3;

use serde_json::Value;

use crate::error::Error;
use crate::key::{Home, KeyRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ResourceType {
    #[serde(rename = "AWS::RDS::DBInstance")]
    RdsDbInstance,
    #[serde(rename = "AWS::RDS::DBCluster")]
    RdsDbCluster,
    #[serde(rename = "AWS::DynamoDB::Table")]
    DynamoDbTable,
    #[serde(rename = "AWS::S3::Bucket")]
    S3Bucket,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] =
        [ResourceType::RdsDbInstance, ResourceType::RdsDbCluster, ResourceType::DynamoDbTable, ResourceType::S3Bucket];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::RdsDbInstance => "AWS::RDS::DBInstance",
            ResourceType::RdsDbCluster => "AWS::RDS::DBCluster",
            ResourceType::DynamoDbTable => "AWS::DynamoDB::Table",
            ResourceType::S3Bucket => "AWS::S3::Bucket",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a resource's data is encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Not encrypted; the text says how we know.
    Unencrypted(String),
    /// S3-managed keys (SSE-S3, AES256).
    S3Managed,
    /// No default encryption recorded for a bucket: S3 applies SSE-S3 to every bucket
    /// (since January 2023), so the data is encrypted, with a key S3 owns.
    S3ManagedByDefault,
    /// DynamoDB's default AWS-owned key.
    AwsOwnedKey,
    /// A KMS key, as referenced on the resource.
    Kms(KeyRef),
    /// Reading how the resource is encrypted was refused (a bucket or resource policy, an
    /// SCP): a finding for this resource, never a stop for the sweep.
    Unreadable(crate::key::Denial),
}

/// A resource to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub resource_type: ResourceType,
    /// Config's resourceId: dbiResourceId, dbClusterResourceId, table or bucket name.
    pub resource_id: String,
    /// What people call it (DB identifier, table or bucket name).
    pub name: String,
    /// Where a bare key id or alias on this resource is resolved.
    pub home: Home,
    pub protection: Protection,
}

/// A configuration item, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Evaluate(Resource),
    /// Deleted, not recorded, or of a type this rule does not evaluate.
    NotApplicable {
        resource_type: String,
        resource_id: String,
        reason: String,
    },
}

/// Reads a configuration item (the JSON shape of Config's invoking events and of
/// GetResourceConfigHistory, converted) into a resource to evaluate.
pub fn from_configuration_item(item: &Value, rule_types: &[ResourceType]) -> Result<Item, Error> {
    let field = |name| crate::event::str_field(item, name).map_err(|e| prefix("configurationItem", e));
    let type_name = field("resourceType")?;
    let resource_id = field("resourceId")?.to_string();
    let status = match item.get("configurationItemStatus") {
        None | Some(Value::Null) => "OK",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Error::malformed("configurationItem.configurationItemStatus must be a string")),
    };
    let na = |reason: String| {
        Ok(Item::NotApplicable { resource_type: type_name.to_string(), resource_id: resource_id.clone(), reason })
    };
    if matches!(status, "ResourceDeleted" | "ResourceDeletedNotRecorded" | "ResourceNotRecorded") {
        return na(format!("configuration item status is {status}"));
    }
    let Some(resource_type) = ResourceType::parse(type_name).filter(|t| rule_types.contains(t)) else {
        tracing::warn!(resource_type = type_name, "resource type not evaluated by this rule");
        return na(format!(
            "resource type {} is not evaluated by this rule",
            crate::key::reference::truncate_chars(type_name, 60)
        ));
    };
    // Invoking events say awsAccountId; GetResourceConfigHistory and BatchGetResourceConfig
    // items (and tools that store them) say accountId.
    let account = match item.get("awsAccountId") {
        None | Some(Value::Null) if item.get("accountId").is_some_and(Value::is_string) => field("accountId")?,
        _ => field("awsAccountId")?,
    };
    let region = field("awsRegion")?;
    let name = item.get("resourceName").and_then(Value::as_str).unwrap_or(&resource_id).to_string();
    // The API shape carries the configuration as a JSON string.
    let parsed;
    let configuration = match item.get("configuration").filter(|c| !c.is_null()) {
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s).map_err(|e| {
                Error::malformed(format!("configurationItem.configuration is a string but not JSON: {e}"))
            })?;
            Some(&parsed)
        }
        other => other,
    };
    let protection = match resource_type {
        ResourceType::RdsDbInstance | ResourceType::RdsDbCluster => {
            let c = configuration.ok_or_else(|| Error::malformed("configurationItem.configuration is missing"))?;
            rds::protection_from_configuration(c)?
        }
        ResourceType::DynamoDbTable => {
            let c = configuration.ok_or_else(|| Error::malformed("configurationItem.configuration is missing"))?;
            dynamodb::protection_from_configuration(c)?
        }
        ResourceType::S3Bucket => s3::protection_from_item(item)?,
    };
    Ok(Item::Evaluate(Resource { resource_type, resource_id, name, home: Home::new(region, account), protection }))
}

fn prefix(what: &str, e: Error) -> Error {
    match e {
        Error::MalformedEvent(m) => Error::MalformedEvent(format!("{what}.{m}")),
        other => other,
    }
}

/// Looks a field up ignoring ASCII case: Config spells some fields differently depending
/// on the source (`sSEDescription`, `ssedescription`, `SSEDescription`).
pub(crate) fn field_ci<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

pub(crate) fn opt_str<'a>(obj: &'a Value, name: &str, path: &str) -> Result<Option<&'a str>, Error> {
    match field_ci(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::malformed(format!("{path}.{name} must be a string"))),
    }
}

pub(crate) fn key_ref(raw: &str, path: &str) -> Result<KeyRef, Error> {
    KeyRef::parse(raw).map_err(|e| Error::malformed(format!("{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn protection_of(resource_type: &str, configuration: Value, supplementary: Value) -> Protection {
        let item = json!({
            "resourceType": resource_type, "resourceId": "r-1", "awsAccountId": "123456789012",
            "awsRegion": "eu-west-1", "configurationItemStatus": "OK",
            "configuration": configuration, "supplementaryConfiguration": supplementary,
        });
        match from_configuration_item(&item, &ResourceType::ALL).unwrap() {
            Item::Evaluate(r) => r.protection,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dynamodb_sse_enabled_without_a_key_is_the_aws_managed_key() {
        // The casing Config records for tables.
        let p = protection_of(
            "AWS::DynamoDB::Table",
            json!({"tableName": "t", "ssedescription": {"status": "ENABLED", "ssetype": "KMS"}}),
            json!({}),
        );
        assert_eq!(p, Protection::Kms(KeyRef::AliasName("alias/aws/dynamodb".into())));
        let p = protection_of("AWS::DynamoDB::Table", json!({"ssedescription": {"status": "ENABLED"}}), json!({}));
        assert_eq!(p, Protection::Kms(KeyRef::AliasName("alias/aws/dynamodb".into())));
        // No description at all: DynamoDB's AWS-owned key.
        assert_eq!(
            protection_of("AWS::DynamoDB::Table", json!({"tableName": "t"}), json!({})),
            Protection::AwsOwnedKey
        );
    }

    #[test]
    fn rds_sse_rds_is_an_aws_owned_key_not_encryption_off() {
        for t in ["AWS::RDS::DBCluster", "AWS::RDS::DBInstance"] {
            let p = protection_of(t, json!({"storageEncrypted": false, "storageEncryptionType": "sse-rds"}), json!({}));
            assert_eq!(p, Protection::AwsOwnedKey, "{t}");
            let p = protection_of(t, json!({"storageEncrypted": false, "storageEncryptionType": "none"}), json!({}));
            assert!(matches!(p, Protection::Unencrypted(_)), "{t}: {p:?}");
        }
    }

    #[test]
    fn s3_items_without_recorded_encryption_have_sse_s3() {
        assert_eq!(protection_of("AWS::S3::Bucket", json!({"name": "b"}), json!({})), Protection::S3ManagedByDefault);
        let empty = json!({"ServerSideEncryptionConfiguration": {"rules": []}});
        assert_eq!(protection_of("AWS::S3::Bucket", json!({}), empty), Protection::S3ManagedByDefault);
    }
}
