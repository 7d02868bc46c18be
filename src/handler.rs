//! One invocation of a rule, from parsed event to evaluations. Lambda binaries, the
//! `evaluate` CLI and `scan` all run this code; there is no second implementation.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::aws::{fail, Aws};
use crate::error::Error;
use crate::event::{self, Invocation, ItemSummary, Trigger};
use crate::key::lookup::KeyReader;
use crate::key::{Home, KeyLookup};
use crate::params::RuleParams;
use crate::report::{self, Evaluation};
use crate::resource::{self, dynamodb, rds, s3, Item, Protection, Resource, ResourceType};
use crate::rule::Rule;
use crate::verdict::{decide, Compliance, Verdict};

/// Stop gathering this long before the Lambda deadline, leaving time to fail cleanly.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// One resource, its key lookup and the verdict.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub resource: Resource,
    /// Shared by every resource on the same key: one copy of the facts per key.
    pub lookup: Option<Arc<KeyLookup>>,
    pub verdict: Verdict,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub evaluations: Vec<Evaluation>,
    /// Resources actually judged (not NOT_APPLICABLE items and stale results).
    pub assessments: Vec<Assessment>,
    pub put_evaluation_calls: usize,
}

/// The whole Lambda handler: parse, evaluate, report.
pub async fn handle(
    aws: &Aws,
    rule: Rule,
    payload: Value,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<Outcome, Error> {
    let inv = event::parse(payload)?;
    let mut outcome = evaluate(aws, rule, &inv, now, deadline).await?;
    outcome.put_evaluation_calls = report::put_evaluations(aws, &inv.result_token, &outcome.evaluations).await?;
    tracing::info!(
        rule = rule.name,
        evaluations = outcome.evaluations.len(),
        non_compliant = outcome.evaluations.iter().filter(|e| e.compliance == Compliance::NonCompliant).count(),
        calls = outcome.put_evaluation_calls,
        "evaluations reported"
    );
    Ok(outcome)
}

/// Everything but PutEvaluations.
pub async fn evaluate(
    aws: &Aws,
    rule: Rule,
    inv: &Invocation,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<Outcome, Error> {
    let params = RuleParams::parse(inv.rule_parameters())?;
    match &inv.trigger {
        Trigger::Change { item, captured } => evaluate_item(aws, rule, inv, &params, item, *captured, now).await,
        Trigger::Oversized { summary } => {
            if summary.status.starts_with("ResourceDeleted")
                || summary.status == "ResourceNotRecorded"
                || inv.left_scope()
            {
                let why = if inv.left_scope() {
                    "left the rule's scope".to_string()
                } else {
                    format!("configuration item status is {}", summary.status)
                };
                return Ok(not_applicable(&summary.resource_type, &summary.resource_id, why, summary.captured));
            }
            let item = fetch_item(aws, summary).await?;
            evaluate_item(aws, rule, inv, &params, &item, summary.captured, now).await
        }
        Trigger::Periodic { notified } => {
            let home = Home::new(aws.region(), inv.account_id.clone());
            let sweep = sweep(aws, rule, &params, &home, now);
            let mut outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d - DEADLINE_MARGIN, sweep).await.map_err(|_| {
                    Error::Deadline(format!(
                        "the periodic sweep did not finish {}s before the Lambda timeout; nothing was reported",
                        DEADLINE_MARGIN.as_secs()
                    ))
                })??,
                None => sweep.await?,
            };
            outcome.evaluations = outcome.assessments.iter().map(|a| to_evaluation(a, *notified)).collect();
            // TestMode results are never recorded, so there is nothing stale to retire.
            if let (false, Some(name)) = (inv.test_mode(), inv.rule_name()) {
                let recorded = report::recorded_results(aws, name).await?;
                for (t, id) in report::stale(&recorded, &outcome.evaluations) {
                    outcome.evaluations.push(Evaluation {
                        resource_type: t,
                        resource_id: id,
                        compliance: Compliance::NotApplicable,
                        annotation: "resource no longer exists".into(),
                        ordering_timestamp: *notified,
                    });
                }
            }
            Ok(outcome)
        }
    }
}

/// Enumerates and judges every resource of the rule's types in `home`.
pub async fn sweep(
    aws: &Aws,
    rule: Rule,
    params: &RuleParams,
    home: &Home,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let resources = enumerate(aws, rule.resource_types, home).await?;
    let assessments = assess(aws, params, &home.account, resources, now).await?;
    Ok(Outcome { assessments, ..Outcome::default() })
}

pub async fn enumerate(aws: &Aws, types: &[ResourceType], home: &Home) -> Result<Vec<Resource>, Error> {
    let mut out = Vec::new();
    if types.iter().any(|t| matches!(t, ResourceType::RdsDbInstance | ResourceType::RdsDbCluster)) {
        out.extend(rds::enumerate(aws, home, types).await?);
    }
    if types.contains(&ResourceType::DynamoDbTable) {
        out.extend(dynamodb::enumerate(aws, home).await?);
    }
    if types.contains(&ResourceType::S3Bucket) {
        out.extend(s3::enumerate(aws, home).await?);
    }
    Ok(out)
}

/// Judges resources, looking each distinct key up once.
pub async fn assess(
    aws: &Aws,
    params: &RuleParams,
    own_account: &str,
    resources: Vec<Resource>,
    now: DateTime<Utc>,
) -> Result<Vec<Assessment>, Error> {
    let reader = KeyReader::new(aws, params, own_account);
    let refs = resources.iter().filter_map(|r| match &r.protection {
        Protection::Kms(k) => Some((k, &r.home)),
        _ => None,
    });
    let lookups: HashMap<String, Arc<KeyLookup>> =
        reader.look_up_all(refs).await?.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
    Ok(resources
        .into_iter()
        .map(|resource| {
            let lookup = match &resource.protection {
                Protection::Kms(k) => lookups.get(&k.qualified(&resource.home)).cloned(),
                _ => None,
            };
            let verdict = decide(&resource.protection, lookup.as_deref(), params, now);
            Assessment { resource, lookup, verdict }
        })
        .collect())
}

fn to_evaluation(a: &Assessment, at: DateTime<Utc>) -> Evaluation {
    // The audit trail: what was decided for each resource, not only counts. (Checked
    // first so that a sweep without a subscriber, as in the benchmark, pays nothing.)
    if tracing::enabled!(tracing::Level::INFO) {
        let key = match (a.lookup.as_deref(), &a.resource.protection) {
            (Some(KeyLookup::Found(f)), _) => f.key_arn.clone(),
            (_, Protection::Kms(r)) => r.to_string(),
            _ => "-".into(),
        };
        tracing::info!(
            resourceType = a.resource.resource_type.as_str(),
            resource = %a.resource.resource_id,
            key,
            compliance = a.verdict.compliance.as_str(),
            annotation = %a.verdict.annotation,
            "verdict"
        );
    }
    Evaluation {
        resource_type: a.resource.resource_type.as_str().to_string(),
        resource_id: a.resource.resource_id.clone(),
        compliance: a.verdict.compliance,
        annotation: a.verdict.annotation.clone(),
        ordering_timestamp: at,
    }
}

fn not_applicable(resource_type: &str, resource_id: &str, why: String, at: DateTime<Utc>) -> Outcome {
    let v = Verdict::not_applicable(why);
    Outcome {
        evaluations: vec![Evaluation {
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            compliance: v.compliance,
            annotation: v.annotation,
            ordering_timestamp: at,
        }],
        ..Outcome::default()
    }
}

async fn evaluate_item(
    aws: &Aws,
    rule: Rule,
    inv: &Invocation,
    params: &RuleParams,
    item: &Value,
    captured: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    if inv.left_scope() {
        let t = event::str_field(item, "resourceType")?;
        let id = event::str_field(item, "resourceId")?;
        return Ok(not_applicable(t, id, "left the rule's scope".into(), captured));
    }
    match resource::from_configuration_item(item, rule.resource_types)? {
        Item::NotApplicable { resource_type, resource_id, reason } => {
            Ok(not_applicable(&resource_type, &resource_id, reason, captured))
        }
        Item::Evaluate(r) => {
            let assessments = assess(aws, params, &inv.account_id, vec![r], now).await?;
            let evaluations = assessments.iter().map(|a| to_evaluation(a, captured)).collect();
            Ok(Outcome { evaluations, assessments, put_evaluation_calls: 0 })
        }
    }
}

/// Fetches an oversized item: the newest version captured at or before the summary's
/// capture time. A page may come back empty with a nextToken; keep reading.
async fn fetch_item(aws: &Aws, s: &ItemSummary) -> Result<Value, Error> {
    let later = aws_smithy_types::DateTime::from_millis(s.captured.timestamp_millis());
    let mut token = None;
    for _ in 0..20 {
        let out = aws
            .config_service()
            .get_resource_config_history()
            .resource_type(aws_sdk_config::types::ResourceType::from(s.resource_type.as_str()))
            .resource_id(&s.resource_id)
            .later_time(later)
            .limit(1)
            .set_next_token(token)
            .send()
            .await
            .map_err(fail("config:GetResourceConfigHistory"))?;
        if let Some(ci) = out.configuration_items().first() {
            return Ok(item_to_json(ci));
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Err(Error::Aws {
        operation: "config:GetResourceConfigHistory",
        transient: true,
        message: format!("no configuration item for {} {} at or before {}", s.resource_type, s.resource_id, s.captured),
    })
}

/// The SDK's item in the JSON shape of invoking events, so one extractor reads both.
fn item_to_json(ci: &aws_sdk_config::types::ConfigurationItem) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()));
    let supplementary: serde_json::Map<String, Value> = ci
        .supplementary_configuration()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), parse(v))).collect())
        .unwrap_or_default();
    serde_json::json!({
        "resourceType": ci.resource_type().map(|t| t.as_str()),
        "resourceId": ci.resource_id(),
        "resourceName": ci.resource_name(),
        "awsRegion": ci.aws_region(),
        "awsAccountId": ci.account_id(),
        "configurationItemStatus": ci.configuration_item_status().map(|s| s.as_str()),
        "configuration": ci.configuration().map(parse),
        "supplementaryConfiguration": supplementary,
    })
}
