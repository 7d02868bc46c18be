//! One invocation of a rule, from parsed event to evaluations. Lambda binaries, the
//! `evaluate` CLI and `scan` all run this code; there is no second implementation.
//!
//! It holds no presentation (the CLI and `audit` render its assessments); judging a key's
//! protection is `verdict`'s.
//!
//! The parts: this file takes an event to evaluations; `sweep` enumerates and judges every
//! resource of an account and Region; `oversized` reads items Config only summarised.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::aws::{classify, Aws, FailureKind};
use crate::error::Error;
use crate::event::{self, Invocation, Trigger};
use crate::key::lookup::KeyReader;
use crate::key::reference::partition_of;
use crate::key::{Home, KeyLookup};
use crate::params::RuleParams;
use crate::report::{self, Evaluation};
use crate::resource::{self, Item, Protection, Resource, ResourceType};
use crate::rule::Rule;
use crate::verdict::{Compliance, Verdict};

mod oversized;
mod sweep;

pub use sweep::{assess, enumerate, enumerate_each, sweep};

use oversized::fetch_item;
use sweep::{assess_with, sweep_with};

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
    /// When each stage of a sweep finished, from the start of the sweep (the stages
    /// overlap: keys are read while the enumeration goes on). Empty for change events.
    pub stages: Vec<(&'static str, std::time::Duration)>,
}

/// The whole Lambda handler: parse, evaluate, report.
pub async fn handle(
    aws: &Aws,
    rule: Rule,
    payload: Value,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<Outcome, Error> {
    handle_as(aws, rule, payload, now, deadline, None).await
}

/// [`handle`] for a function that runs organization rules: `execution_role` (the function's
/// KRG_EXECUTION_ROLE_NAME) is the only role it enters member accounts with. An event whose
/// executionRoleName names another role is refused: the rule parameters come from whoever's
/// Config invokes the function, the role it acts with must not.
pub async fn handle_as(
    aws: &Aws,
    rule: Rule,
    payload: Value,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
    execution_role: Option<&str>,
) -> Result<Outcome, Error> {
    let inv = event::parse(payload)?;
    let mut params = RuleParams::parse(inv.rule_parameters())?;
    if let Some(required) = execution_role {
        match params.execution_role_name.as_deref() {
            None => params.execution_role_name = Some(required.to_string()),
            Some(given) if given == required => {}
            Some(given) => {
                return Err(Error::InvalidParameter {
                    name: "executionRoleName".into(),
                    reason: format!(
                        "this function enters member accounts only through role {required}, not {:?}",
                        crate::key::reference::truncate_chars(given, 64)
                    ),
                })
            }
        }
    }
    // Organization rules act in the event's account before anything else is read: a member
    // whose role is missing fails here, having read nothing and reported nothing.
    let member = match params.execution_role_name.as_deref() {
        Some(role) => Some(member_account(aws, &inv.account_id, role).await?),
        None => None,
    };
    let acting = member.as_ref().unwrap_or(aws);
    let started = Instant::now();
    let mut outcome = evaluate_in(aws, acting, rule, &inv, &params, now, deadline).await?;
    outcome.put_evaluation_calls = report::put_evaluations(acting, &inv.result_token, &outcome.evaluations).await?;
    if !outcome.stages.is_empty() {
        outcome.stages.push(("reported", started.elapsed()));
    }
    tracing::info!(
        rule = rule.name,
        account = %inv.account_id,
        evaluations = outcome.evaluations.len(),
        non_compliant = outcome.evaluations.iter().filter(|e| e.compliance == Compliance::NonCompliant).count(),
        calls = outcome.put_evaluation_calls,
        "evaluations reported"
    );
    Ok(outcome)
}

/// The role ARN an organization rule assumes in `account`.
pub fn execution_role_arn(partition: &str, account: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{role_name}")
}

/// `aws` acting in member `account` through its execution role: one sts:AssumeRole per
/// account per credential lifetime, cached process-wide (warm invocations reuse it).
pub async fn member_account(aws: &Aws, account: &str, role_name: &str) -> Result<Aws, Error> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::malformed(format!(
            "accountId {:?} is not a 12-digit account id",
            crate::key::reference::truncate_chars(account, 40)
        )));
    }
    let role_arn = execution_role_arn(partition_of(&aws.region()), account, role_name);
    match aws.assume_role(&role_arn, "kms-rotation-guard").await {
        Ok(credentials) => Ok(aws.for_account(credentials)),
        Err(e) => {
            let f = classify(&e);
            match f.kind {
                // Throttling or a dropped connection says nothing about the role: retry.
                FailureKind::Transient => Err(f.into_error("sts:AssumeRole")),
                _ => Err(Error::MemberRole { account: account.to_string(), role_arn, message: f.message }),
            }
        }
    }
}

/// Everything but PutEvaluations, in the function's own account.
pub async fn evaluate(
    aws: &Aws,
    rule: Rule,
    inv: &Invocation,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<Outcome, Error> {
    let params = RuleParams::parse(inv.rule_parameters())?;
    evaluate_in(aws, aws, rule, inv, &params, now, deadline).await
}

/// Everything but PutEvaluations. `acting` reads the resources and Config's records (a
/// member account's, for organization rules); keys of other accounts are read with `aws`,
/// the function's own access (through the key-reader role when one is configured).
#[allow(clippy::too_many_arguments)]
async fn evaluate_in(
    aws: &Aws,
    acting: &Aws,
    rule: Rule,
    inv: &Invocation,
    params: &RuleParams,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<Outcome, Error> {
    let params = params.clone();
    let keys = Keys { aws, acting, account: &inv.account_id };
    match &inv.trigger {
        Trigger::Change { item, captured } => evaluate_item(keys, rule, inv, &params, item, *captured, now).await,
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
            // Decided from the summary: fetching a history this rule cannot judge would
            // spend a call, and fail the invocation on a type GetResourceConfigHistory lacks.
            if !ResourceType::parse(&summary.resource_type).is_some_and(|t| rule.resource_types.contains(&t)) {
                let why = format!(
                    "resource type {} is not evaluated by this rule",
                    crate::key::reference::truncate_chars(&summary.resource_type, 60)
                );
                return Ok(not_applicable(&summary.resource_type, &summary.resource_id, why, summary.captured));
            }
            let item = fetch_item(acting, summary).await?;
            evaluate_item(keys, rule, inv, &params, &item, summary.captured, now).await
        }
        Trigger::Periodic { notified } => {
            let home = Home::new(acting.region(), inv.account_id.clone());
            // Earlier results are read while the sweep runs: neither waits for the other.
            // TestMode results are never recorded, so there is nothing stale to retire.
            let stale_candidates = async {
                match (inv.test_mode(), inv.rule_name()) {
                    (false, Some(name)) => report::recorded_results(acting, name).await.map(Some),
                    _ => Ok(None),
                }
            };
            let sweep = async { tokio::try_join!(sweep_with(keys, rule, &params, &home, now), stale_candidates) };
            let (mut outcome, recorded) = match deadline {
                Some(d) => tokio::time::timeout_at(d - DEADLINE_MARGIN, sweep).await.map_err(|_| {
                    Error::Deadline(format!(
                        "the periodic sweep did not finish {}s before the Lambda timeout; nothing was reported",
                        DEADLINE_MARGIN.as_secs()
                    ))
                })??,
                None => sweep.await?,
            };
            outcome.evaluations = outcome.assessments.iter().map(|a| to_evaluation(a, *notified)).collect();
            if let Some(recorded) = recorded {
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

/// Who reads what in one invocation: `acting` enumerates and reports in `account`; keys
/// of `account` are read with `acting`, keys of other accounts with `aws`.
#[derive(Clone, Copy)]
struct Keys<'a> {
    aws: &'a Aws,
    acting: &'a Aws,
    account: &'a str,
}

impl<'a> Keys<'a> {
    fn reader(&self, params: &'a RuleParams) -> KeyReader<'a> {
        // A warm rule Lambda keeps keys' tags and rotations across invocations (key::cache):
        // an organization's members read each key about once, not once each.
        let reader = KeyReader::new(self.aws, params, self.account).keeping(crate::key::cache::process());
        if !std::ptr::eq(self.aws, self.acting) {
            reader.read_account_with(self.account, self.acting.kms().clone());
        }
        reader
    }
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
    keys: Keys<'_>,
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
            let assessments = assess_with(keys, params, vec![r], now).await?;
            let evaluations = assessments.iter().map(|a| to_evaluation(a, captured)).collect();
            Ok(Outcome { evaluations, assessments, ..Outcome::default() })
        }
    }
}
