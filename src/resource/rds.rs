//! RDS DB instances and clusters. Config's resourceId is the dbiResourceId
//! (`db-…`) for instances and the dbClusterResourceId (`cluster-…`) for clusters.
//!
//! Reads only.

use serde_json::Value;

use super::{field_ci, key_ref, opt_str, Protection, Resource, ResourceType};
use crate::aws::{fail, Aws};
use crate::error::Error;
use crate::key::Home;

/// `configuration.storageEncrypted` + `configuration.kmsKeyId` (+ `storageEncryptionType`),
/// the same for both types.
pub fn protection_from_configuration(c: &Value) -> Result<Protection, Error> {
    let encrypted = match field_ci(c, "storageEncrypted") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::malformed("configuration.storageEncrypted must be a boolean")),
    };
    let key = opt_str(c, "kmsKeyId", "configuration")?;
    let kind = opt_str(c, "storageEncryptionType", "configuration")?;
    protection(encrypted, key, kind)
}

/// `StorageEncryptionType` `sse-rds`: RDS encrypts with a key AWS owns, and reports
/// `StorageEncrypted` false (the Aurora default since 2026-02-18). Not "encryption off".
fn protection(encrypted: bool, key: Option<&str>, kind: Option<&str>) -> Result<Protection, Error> {
    if !encrypted && kind.is_some_and(|k| k.eq_ignore_ascii_case("sse-rds")) {
        return Ok(Protection::AwsOwnedKey);
    }
    Ok(match (encrypted, key) {
        (false, _) => Protection::Unencrypted("storage encryption is off".into()),
        (true, Some(k)) => Protection::Kms(key_ref(k, "kmsKeyId")?),
        // RDS always names the key of encrypted storage; without it we cannot judge.
        (true, None) => return Err(Error::malformed("kmsKeyId is missing although storageEncrypted is true")),
    })
}

/// Every DB instance and cluster in the account and region (paginated), each handed to
/// `found` as its page arrives; instances and clusters are listed at the same time.
pub async fn enumerate(
    aws: &Aws,
    home: &Home,
    types: &[ResourceType],
    found: &(dyn Fn(Resource) + Send + Sync),
) -> Result<(), Error> {
    let instances = async {
        if !types.contains(&ResourceType::RdsDbInstance) {
            return Ok(());
        }
        let mut pages = aws.rds().describe_db_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            for db in page.map_err(fail("rds:DescribeDBInstances"))?.db_instances() {
                let Some(id) = db.dbi_resource_id() else { continue };
                found(Resource {
                    resource_type: ResourceType::RdsDbInstance,
                    resource_id: id.to_string(),
                    name: db.db_instance_identifier().unwrap_or(id).to_string(),
                    home: home.clone(),
                    protection: protection(
                        db.storage_encrypted().unwrap_or(false),
                        db.kms_key_id(),
                        db.storage_encryption_type().map(|t| t.as_str()),
                    )?,
                });
            }
        }
        Ok::<_, Error>(())
    };
    let clusters = async {
        if !types.contains(&ResourceType::RdsDbCluster) {
            return Ok(());
        }
        let mut pages = aws.rds().describe_db_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            for c in page.map_err(fail("rds:DescribeDBClusters"))?.db_clusters() {
                let Some(id) = c.db_cluster_resource_id() else { continue };
                found(Resource {
                    resource_type: ResourceType::RdsDbCluster,
                    resource_id: id.to_string(),
                    name: c.db_cluster_identifier().unwrap_or(id).to_string(),
                    home: home.clone(),
                    protection: protection(
                        c.storage_encrypted().unwrap_or(false),
                        c.kms_key_id(),
                        c.storage_encryption_type().map(|t| t.as_str()),
                    )?,
                });
            }
        }
        Ok::<_, Error>(())
    };
    tokio::try_join!(instances, clusters)?;
    Ok(())
}
