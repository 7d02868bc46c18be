//! Evaluations and how they reach Config: batches of at most 100, FailedEvaluations
//! re-sent, and stale results from earlier sweeps retired as NOT_APPLICABLE.
//!
//! It sends what the handler decided and never changes a verdict.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_config::types::{ComplianceType, Evaluation as SdkEvaluation};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{fail, Aws};
use crate::error::Error;
use crate::verdict::Compliance;

/// PutEvaluations takes at most this many per call.
pub const BATCH: usize = 100;
/// Re-sends of entries Config reports in FailedEvaluations before the invocation fails.
const RESENDS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub resource_type: String,
    pub resource_id: String,
    pub compliance: Compliance,
    pub annotation: String,
    pub ordering_timestamp: DateTime<Utc>,
}

impl Evaluation {
    fn to_sdk(&self) -> Result<SdkEvaluation, Error> {
        let t = aws_smithy_types::DateTime::from_millis(self.ordering_timestamp.timestamp_millis());
        SdkEvaluation::builder()
            .compliance_resource_type(&self.resource_type)
            .compliance_resource_id(&self.resource_id)
            .compliance_type(ComplianceType::from(self.compliance.as_str()))
            .annotation(&self.annotation)
            .ordering_timestamp(t)
            .build()
            .map_err(|e| Error::Aws { operation: "config:PutEvaluations", transient: false, message: e.to_string() })
    }
}

/// Batches in flight at once: the round trips overlap, well inside PutEvaluations' quota.
const CONCURRENT_BATCHES: usize = 4;

/// Sends every evaluation; returns the number of PutEvaluations calls made. Any batch that
/// finally fails fails the whole report (and so the invocation).
pub async fn put_evaluations(aws: &Aws, result_token: &str, evaluations: &[Evaluation]) -> Result<usize, Error> {
    use futures_util::{StreamExt, TryStreamExt};
    // The futures are built first: a stream closure borrowing `aws` would not be general
    // enough for callers that spawn the handler.
    let batches: Vec<_> = evaluations.chunks(BATCH).map(|chunk| put_batch(aws, result_token, chunk)).collect();
    let calls: Vec<usize> =
        futures_util::stream::iter(batches).buffer_unordered(CONCURRENT_BATCHES).try_collect().await?;
    Ok(calls.iter().sum())
}

/// One batch of at most 100, re-sending what Config reports in FailedEvaluations.
async fn put_batch(aws: &Aws, result_token: &str, chunk: &[Evaluation]) -> Result<usize, Error> {
    let test_mode = result_token == "TESTMODE";
    let mut calls = 0;
    {
        let mut pending = chunk.iter().map(Evaluation::to_sdk).collect::<Result<Vec<_>, _>>()?;
        for attempt in 0..=RESENDS {
            calls += 1;
            let out = aws
                .config_service()
                .put_evaluations()
                .result_token(result_token)
                .set_evaluations(Some(pending.clone()))
                .test_mode(test_mode)
                .send()
                .await
                .map_err(fail("config:PutEvaluations"))?;
            let failed = out.failed_evaluations();
            if failed.is_empty() {
                break;
            }
            if attempt == RESENDS {
                let first = &failed[0];
                return Err(Error::Aws {
                    operation: "config:PutEvaluations",
                    transient: true,
                    message: format!(
                        "Config still rejected {} evaluations after {RESENDS} re-sends (first: {} {})",
                        failed.len(),
                        first.compliance_resource_type(),
                        first.compliance_resource_id()
                    ),
                });
            }
            tracing::warn!(
                failed = failed.len(),
                attempt,
                "PutEvaluations returned FailedEvaluations; re-sending them"
            );
            pending = failed.to_vec();
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
    Ok(calls)
}

/// (resource type, resource id): results are matched on the pair, never the id alone,
/// because a table and a bucket may share a name.
pub type ResultKey = (String, String);

/// Results recorded earlier for this rule and not NOT_APPLICABLE yet.
pub async fn recorded_results(aws: &Aws, rule_name: &str) -> Result<BTreeSet<ResultKey>, Error> {
    let mut keys = BTreeSet::new();
    let mut pages = aws
        .config_service()
        .get_compliance_details_by_config_rule()
        .config_rule_name(rule_name)
        .compliance_types(ComplianceType::Compliant)
        .compliance_types(ComplianceType::NonCompliant)
        .limit(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for r in page.map_err(fail("config:GetComplianceDetailsByConfigRule"))?.evaluation_results() {
            let q = r.evaluation_result_identifier().and_then(|i| i.evaluation_result_qualifier());
            if let Some((t, id)) = q.and_then(|q| Some((q.resource_type()?, q.resource_id()?))) {
                keys.insert((t.to_string(), id.to_string()));
            }
        }
    }
    Ok(keys)
}

/// Recorded results whose resource the sweep no longer found.
pub fn stale(recorded: &BTreeSet<ResultKey>, current: &[Evaluation]) -> Vec<ResultKey> {
    let now: BTreeSet<(&str, &str)> =
        current.iter().map(|e| (e.resource_type.as_str(), e.resource_id.as_str())).collect();
    recorded.iter().filter(|(t, id)| !now.contains(&(t.as_str(), id.as_str()))).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(t: &str, id: &str) -> Evaluation {
        Evaluation {
            resource_type: t.into(),
            resource_id: id.into(),
            compliance: Compliance::Compliant,
            annotation: "x".into(),
            ordering_timestamp: Utc::now(),
        }
    }

    #[test]
    fn stale_results_match_on_type_and_id_together() {
        let recorded: BTreeSet<ResultKey> = [
            ("AWS::S3::Bucket".to_string(), "orders".to_string()),
            ("AWS::DynamoDB::Table".to_string(), "orders".to_string()),
            ("AWS::S3::Bucket".to_string(), "gone".to_string()),
        ]
        .into();
        // The table "orders" is gone; a bucket of the same name still exists.
        let current = [eval("AWS::S3::Bucket", "orders")];
        assert_eq!(
            stale(&recorded, &current),
            vec![
                ("AWS::DynamoDB::Table".to_string(), "orders".to_string()),
                ("AWS::S3::Bucket".to_string(), "gone".to_string())
            ]
        );
    }
}
