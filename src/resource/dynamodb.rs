//! DynamoDB tables. Config's resourceId is the table name. A table without an SSE
//! description uses DynamoDB's AWS-owned key; one whose SSE is ENABLED without a key ARN
//! uses the AWS managed key `aws/dynamodb`.
//!
//! Reads only.

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{field_ci, key_ref, opt_str, Protection, Resource, ResourceType};
use crate::aws::{fail, Aws};
use crate::error::Error;
use crate::key::{Denial, Home, KeyRef};

/// Describes in flight at once. DescribeTable is a control-plane call, throttled per
/// account at 2,500 requests per second (DynamoDB Developer Guide, "Best practices for
/// managing the control plane"). 32 in flight at a 20–50 ms round trip is 640–1,600 per
/// second: inside it, with room for other clients in the account.
const CONCURRENCY: usize = 32;

/// `configuration.sSEDescription.{status, sSEType, kMSMasterKeyArn}`, in any casing.
pub fn protection_from_configuration(c: &Value) -> Result<Protection, Error> {
    let sse = ["sSEDescription", "sseDescription"].iter().find_map(|n| field_ci(c, n));
    let Some(sse) = sse else { return Ok(Protection::AwsOwnedKey) };
    if !sse.is_object() {
        return Err(Error::malformed("configuration.sSEDescription must be an object"));
    }
    let status = opt_str(sse, "status", "configuration.sSEDescription")?;
    let sse_type = opt_str(sse, "sSEType", "configuration.sSEDescription")?;
    let key = opt_str(sse, "kMSMasterKeyArn", "configuration.sSEDescription")?;
    protection(status, sse_type, key)
}

fn protection(status: Option<&str>, sse_type: Option<&str>, key: Option<&str>) -> Result<Protection, Error> {
    // DISABLED/DISABLING means back on the AWS-owned key; any other status with a key
    // (ENABLED, ENABLING, UPDATING) means that key protects the table.
    match (status, key) {
        (Some("DISABLED" | "DISABLING"), _) => Ok(Protection::AwsOwnedKey),
        (_, Some(k)) => Ok(Protection::Kms(key_ref(k, "kMSMasterKeyArn")?)),
        // An SSE description without a key: DynamoDB writes one only when the table is not
        // on its AWS-owned key, so it is the AWS managed key aws/dynamodb.
        (Some(_), None) => Ok(Protection::Kms(KeyRef::AliasName(AWS_MANAGED_ALIAS.into()))),
        (None, None) if sse_type == Some("KMS") => Ok(Protection::Kms(KeyRef::AliasName(AWS_MANAGED_ALIAS.into()))),
        (None, None) => Ok(Protection::AwsOwnedKey),
    }
}

const AWS_MANAGED_ALIAS: &str = "alias/aws/dynamodb";

/// Every table in the account and region: ListTables, then DescribeTable for each, each
/// table handed to `found` as its description arrives.
pub async fn enumerate(aws: &Aws, home: &Home, found: &(dyn Fn(Resource) + Send + Sync)) -> Result<(), Error> {
    let mut names = Vec::new();
    let mut pages = aws.dynamodb().list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        names.extend(page.map_err(fail("dynamodb:ListTables"))?.table_names().iter().cloned());
    }
    let described = futures_util::stream::iter(names)
        .map(|name| async move {
            let out = aws.dynamodb().describe_table().table_name(&name).send().await;
            match out {
                Ok(o) => {
                    let sse = o.table().and_then(|t| t.sse_description());
                    let status = sse.and_then(|s| s.status()).map(|s| s.as_str().to_string());
                    let sse_type = sse.and_then(|s| s.sse_type()).map(|s| s.as_str().to_string());
                    let protection =
                        protection(status.as_deref(), sse_type.as_deref(), sse.and_then(|s| s.kms_master_key_arn()))?;
                    Ok(Some(Resource {
                        resource_type: ResourceType::DynamoDbTable,
                        resource_id: name.clone(),
                        name,
                        home: home.clone(),
                        protection,
                    }))
                }
                Err(e) => match crate::aws::classify(&e).kind {
                    // Deleted between ListTables and DescribeTable: nothing to evaluate.
                    crate::aws::FailureKind::NotFound => Ok(None),
                    // A resource policy or SCP refusing DescribeTable: a finding for this
                    // table; the sweep goes on.
                    crate::aws::FailureKind::Denied => Ok(Some(Resource {
                        resource_type: ResourceType::DynamoDbTable,
                        resource_id: name.clone(),
                        name,
                        home: home.clone(),
                        protection: Protection::Unreadable(Denial {
                            action: "dynamodb:DescribeTable".into(),
                            hint: "allow it to the evaluator role in the table's resource policy and IAM policy".into(),
                        }),
                    })),
                    _ => Err(fail("dynamodb:DescribeTable")(e)),
                },
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|r| {
            if let Some(r) = r {
                found(r);
            }
            futures_util::future::ready(Ok(()))
        });
    described.await
}
