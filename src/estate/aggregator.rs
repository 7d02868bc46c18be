//! The estate through a Config aggregator: one SelectAggregateResourceConfig query per
//! resource type (paginated), no role assumed in any account. Coverage comes from the
//! aggregator's own source status (DescribeConfigurationAggregatorSourcesStatus).
//!
//! What the aggregator cannot say: whether a member's Config recorder records these types
//! at all (a source that succeeds with no resources looks the same as an empty account),
//! and RDS `storageEncryptionType`, which advanced queries do not index (an Aurora cluster
//! on an AWS-owned key then reads "storage encryption is off"; both are NON_COMPLIANT).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::Value;

use super::coverage::{CoverageRow, CoverageStatus};
use super::sweep::finish;
use super::{EstateScan, EstateSpec, Progress, Unjudged};
use crate::audit::AuditRow;
use crate::aws::{fail, Aws};
use crate::error::Error;
use crate::handler::Assessment;
use crate::key::lookup::KeyReader;
use crate::params::RuleParams;
use crate::resource::{self, Item, Protection, Resource, ResourceType};
use crate::verdict::decide;

/// SelectAggregateResourceConfig's largest page (Limit, API reference: 0–100).
const PAGE: i32 = 100;

/// The properties each type is judged on, as the advanced-query schema names them
/// (awslabs/aws-config-resource-schema); the results nest them as configuration items do.
pub fn query(t: ResourceType) -> String {
    let fields = match t {
        ResourceType::RdsDbInstance | ResourceType::RdsDbCluster => {
            "configuration.storageEncrypted, configuration.kmsKeyId"
        }
        ResourceType::DynamoDbTable => {
            "configuration.ssedescription.status, configuration.ssedescription.ssetype, \
             configuration.ssedescription.kmsmasterKeyArn"
        }
        ResourceType::S3Bucket => {
            "supplementaryConfiguration.ServerSideEncryptionConfiguration.rules.applyServerSideEncryptionByDefault.sseAlgorithm, \
             supplementaryConfiguration.ServerSideEncryptionConfiguration.rules.applyServerSideEncryptionByDefault.kmsMasterKeyID"
        }
    };
    format!(
        "SELECT resourceId, resourceName, resourceType, accountId, awsRegion, configurationItemStatus, {fields} \
         WHERE resourceType = '{}'",
        t.as_str()
    )
}

/// One result row of the query as a configuration item (`configuration` may be absent when
/// none of its selected properties is set, e.g. a table on DynamoDB's own key).
fn item_of(result: &str) -> Result<Value, Error> {
    let mut v: Value =
        serde_json::from_str(result).map_err(|e| Error::malformed(format!("aggregator result is not JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| Error::malformed("aggregator result is not a JSON object"))?;
    obj.entry("configuration").or_insert_with(|| Value::Object(Default::default()));
    Ok(v)
}

/// The aggregator's word on each source, by (account or organization id, Region).
async fn sources(aws: &Aws, aggregator: &str) -> Result<HashMap<(String, String), (String, Option<String>)>, Error> {
    let mut out = HashMap::new();
    let mut token = None;
    loop {
        let page = aws
            .config_service()
            .describe_configuration_aggregator_sources_status()
            .configuration_aggregator_name(aggregator)
            .set_next_token(token)
            .send()
            .await
            .map_err(fail("config:DescribeConfigurationAggregatorSourcesStatus"))?;
        for s in page.aggregated_source_status_list() {
            let (Some(id), Some(region)) = (s.source_id(), s.aws_region()) else { continue };
            let status = s.last_update_status().map(|x| x.as_str().to_string()).unwrap_or_default();
            let error = match (s.last_error_code(), s.last_error_message()) {
                (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                (Some(c), None) => Some(c.to_string()),
                (None, m) => m.map(str::to_string),
            };
            out.insert((id.to_string(), region.to_string()), (status, error));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Scans the estate through `aggregator`. Resources outside the spec's accounts and
/// Regions are left out; keys are read once per key, with the scanner's own access
/// (through keyReaderRoleName where set).
pub async fn scan(
    aws: &Aws,
    aggregator: &str,
    spec: &EstateSpec,
    params: &RuleParams,
    now: DateTime<Utc>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<EstateScan, Error> {
    let status = sources(aws, aggregator).await?;
    let wanted_account = |a: &str| spec.accounts.iter().any(|x| x == a);
    let wanted_region = |r: &str| spec.regions.iter().any(|x| x == r);
    let mut out = EstateScan::default();
    let mut resources: Vec<Resource> = Vec::new();
    let types: Vec<ResourceType> = spec.resource_types.clone();
    for (i, t) in types.iter().enumerate() {
        let mut token = None;
        loop {
            let page = aws
                .config_service()
                .select_aggregate_resource_config()
                .configuration_aggregator_name(aggregator)
                .expression(query(*t))
                .limit(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(fail("config:SelectAggregateResourceConfig"))?;
            for result in page.results() {
                let item = item_of(result)?;
                let account = item.get("accountId").and_then(Value::as_str).unwrap_or_default().to_string();
                let region = item.get("awsRegion").and_then(Value::as_str).unwrap_or_default().to_string();
                if !wanted_account(&account) || !wanted_region(&region) {
                    continue;
                }
                match resource::from_configuration_item(&item, &[*t]) {
                    Ok(Item::Evaluate(r)) => resources.push(r),
                    // Deleted, or not recorded: not part of the estate now.
                    Ok(Item::NotApplicable { .. }) => {}
                    Err(e) => out.unjudged.push(Unjudged {
                        account,
                        region,
                        resource_type: t.as_str().to_string(),
                        resource_id: item.get("resourceId").and_then(Value::as_str).unwrap_or("?").to_string(),
                        key_reference: None,
                        reason: format!("the aggregator's configuration item cannot be read: {e}"),
                    }),
                }
            }
            progress(Progress { units_done: i, units_total: types.len(), resources: resources.len() });
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }

    // One reader per Region, as in the assume-role scan.
    let regional: Vec<(String, Aws)> = spec.regions.iter().map(|r| (r.clone(), aws.in_region(r))).collect();
    let readers: BTreeMap<&str, KeyReader<'_>> =
        regional.iter().map(|(r, a)| (r.as_str(), KeyReader::new(a, params, &spec.own_account))).collect();
    let mut per_unit: HashMap<(String, String), usize> = HashMap::new();
    for r in &resources {
        *per_unit.entry((r.home.account.clone(), r.home.region.clone())).or_default() += 1;
    }
    let judged_count = AtomicUsize::new(0);
    let judged: Vec<Result<Assessment, (Resource, Error)>> = futures_util::stream::iter(resources)
        .map(|resource| {
            let (readers, judged_count) = (&readers, &judged_count);
            async move {
                let reader = readers.get(resource.home.region.as_str()).expect("a reader per wanted Region");
                let lookup = match &resource.protection {
                    Protection::Kms(k) => match reader.look_up(k, &resource.home).await {
                        Ok(l) => Some(l),
                        Err(e) => return Err((resource, e)),
                    },
                    _ => None,
                };
                judged_count.fetch_add(1, Ordering::Relaxed);
                let verdict = decide(&resource.protection, lookup.as_deref(), params, now);
                Ok(Assessment { resource, lookup, verdict })
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for j in judged {
        match j {
            Ok(a) => out.rows.push(AuditRow::new(&a, params, now)),
            Err((r, e)) => out.unjudged.push(Unjudged {
                account: r.home.account.clone(),
                region: r.home.region.clone(),
                resource_type: r.resource_type.as_str().to_string(),
                resource_id: r.resource_id.clone(),
                key_reference: match &r.protection {
                    Protection::Kms(k) => Some(k.to_string()),
                    _ => None,
                },
                reason: format!("key not read: {e}"),
            }),
        }
    }

    for account in &spec.accounts {
        for region in &spec.regions {
            let key = (account.clone(), region.clone());
            let source = status.get(&key).or_else(|| {
                // An organization aggregator reports per organization and Region.
                status.iter().find(|((id, r), _)| id.starts_with("o-") && r == region).map(|(_, v)| v)
            });
            let (status, reason) = match source {
                Some((s, _)) if s == "SUCCEEDED" => (CoverageStatus::Scanned, None),
                Some((s, e)) if s == "OUTDATED" => (
                    CoverageStatus::Partial,
                    Some(format!(
                        "aggregator {aggregator} holds outdated data for this source{}",
                        e.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                    )),
                ),
                Some((s, e)) => (
                    CoverageStatus::NotScanned,
                    Some(format!(
                        "aggregator {aggregator} could not collect this source (status {s}){}",
                        e.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    )),
                ),
                None => (
                    CoverageStatus::NotScanned,
                    Some(format!("not a source of aggregator {aggregator} (no status for this account and Region)")),
                ),
            };
            out.coverage.push(CoverageRow {
                account: account.clone(),
                region: region.clone(),
                status,
                reason,
                resources: per_unit.get(&key).copied().unwrap_or(0),
            });
        }
    }
    progress(Progress { units_done: types.len(), units_total: types.len(), resources: judged_count.into_inner() });
    finish(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_type_names_only_schema_properties() {
        let q = query(ResourceType::DynamoDbTable);
        assert!(q.ends_with("WHERE resourceType = 'AWS::DynamoDB::Table'"), "{q}");
        assert!(q.contains("configuration.ssedescription.kmsmasterKeyArn"));
        // A table on DynamoDB's own key has none of the selected properties.
        let item = item_of(r#"{"resourceId":"t","resourceType":"AWS::DynamoDB::Table","accountId":"111122223333","awsRegion":"eu-west-1"}"#).unwrap();
        let Item::Evaluate(r) = resource::from_configuration_item(&item, &[ResourceType::DynamoDbTable]).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.protection, Protection::AwsOwnedKey);
        assert!(item_of("[1]").is_err() && item_of("{").is_err());
    }
}
