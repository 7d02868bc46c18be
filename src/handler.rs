//! One invocation of a rule, from parsed event to evaluations. Lambda binaries, the
//! `evaluate` CLI and `scan` all run this code; there is no second implementation.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::aws::{classify, fail, Aws, FailureKind};
use crate::error::Error;
use crate::event::{self, Invocation, ItemSummary, Trigger};
use crate::key::lookup::KeyReader;
use crate::key::reference::partition_of;
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

/// Enumerates and judges every resource of the rule's types in `home`, as a pipeline: the
/// families are listed at the same time, and each resource's key is looked up (once per
/// key, shared) as soon as the resource arrives, while the enumeration goes on.
pub async fn sweep(
    aws: &Aws,
    rule: Rule,
    params: &RuleParams,
    home: &Home,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    sweep_with(Keys { aws, acting: aws, account: &home.account }, rule, params, home, now).await
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
        let reader = KeyReader::new(self.aws, params, self.account);
        if !std::ptr::eq(self.aws, self.acting) {
            reader.read_account_with(self.account, self.acting.kms().clone());
        }
        reader
    }
}

async fn sweep_with(
    keys: Keys<'_>,
    rule: Rule,
    params: &RuleParams,
    home: &Home,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let aws = keys.acting;
    let reader = keys.reader(params);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Resource>();
    let enumerated = async move {
        let send = move |r: Resource| {
            // The receiver lives until the enumeration ends; a send cannot fail before.
            let _ = tx.send(r);
        };
        enumerate_each(aws, rule.resource_types, home, &send).await?;
        Ok::<_, Error>(started.elapsed())
    };
    let judged = async {
        let mut assessments = Vec::new();
        let mut pending = futures_util::stream::FuturesUnordered::new();
        let mut open = true;
        let mut last_lookup = std::time::Duration::ZERO;
        loop {
            tokio::select! {
                r = rx.recv(), if open => match r {
                    Some(resource) => pending.push(judge(&reader, resource, params, now)),
                    None => open = false,
                },
                Some(a) = pending.next(), if !pending.is_empty() => {
                    let (a, looked_up) = a?;
                    if looked_up {
                        last_lookup = started.elapsed();
                    }
                    assessments.push(a);
                }
                else => break,
            }
        }
        Ok::<_, Error>((assessments, last_lookup))
    };
    let (enumeration, (mut assessments, keys)) = tokio::try_join!(enumerated, judged)?;
    // Completion order is the network's; report in a stable order.
    assessments.sort_by(|a, b| {
        (a.resource.resource_type, &a.resource.resource_id).cmp(&(b.resource.resource_type, &b.resource.resource_id))
    });
    let stages = vec![("enumerated", enumeration), ("keys read", keys), ("judged", started.elapsed())];
    Ok(Outcome { assessments, stages, ..Outcome::default() })
}

/// One resource: its key's facts (shared with every resource on the key), then the verdict.
/// Also says whether it waited for a key.
async fn judge(
    reader: &KeyReader<'_>,
    resource: Resource,
    params: &RuleParams,
    now: DateTime<Utc>,
) -> Result<(Assessment, bool), Error> {
    let lookup = match &resource.protection {
        Protection::Kms(k) => Some(reader.look_up(k, &resource.home).await?),
        _ => None,
    };
    let verdict = decide(&resource.protection, lookup.as_deref(), params, now);
    let looked_up = lookup.is_some();
    Ok((Assessment { resource, lookup, verdict }, looked_up))
}

/// Every resource of `types` in `home`, each handed to `found` as it is read; the
/// families are listed at the same time.
pub async fn enumerate_each(
    aws: &Aws,
    types: &[ResourceType],
    home: &Home,
    found: &(dyn Fn(Resource) + Send + Sync),
) -> Result<(), Error> {
    let rds = async {
        if types.iter().any(|t| matches!(t, ResourceType::RdsDbInstance | ResourceType::RdsDbCluster)) {
            rds::enumerate(aws, home, types, found).await?;
        }
        Ok::<_, Error>(())
    };
    let dynamodb = async {
        if types.contains(&ResourceType::DynamoDbTable) {
            dynamodb::enumerate(aws, home, found).await?;
        }
        Ok::<_, Error>(())
    };
    let s3 = async {
        if types.contains(&ResourceType::S3Bucket) {
            s3::enumerate(aws, home, found).await?;
        }
        Ok::<_, Error>(())
    };
    tokio::try_join!(rds, dynamodb, s3)?;
    Ok(())
}

/// Every resource of `types` in `home`, in a stable order (the `scan` command).
pub async fn enumerate(aws: &Aws, types: &[ResourceType], home: &Home) -> Result<Vec<Resource>, Error> {
    let found = std::sync::Mutex::new(Vec::new());
    enumerate_each(aws, types, home, &|r| found.lock().expect("resource list poisoned").push(r)).await?;
    let mut out = found.into_inner().expect("resource list poisoned");
    out.sort_by(|a, b| (a.resource_type, &a.resource_id).cmp(&(b.resource_type, &b.resource_id)));
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
    assess_with(Keys { aws, acting: aws, account: own_account }, params, resources, now).await
}

async fn assess_with(
    keys: Keys<'_>,
    params: &RuleParams,
    resources: Vec<Resource>,
    now: DateTime<Utc>,
) -> Result<Vec<Assessment>, Error> {
    let reader = keys.reader(params);
    let refs = resources.iter().filter_map(|r| match &r.protection {
        Protection::Kms(k) => Some((k, &r.home)),
        _ => None,
    });
    let lookups: HashMap<String, Arc<KeyLookup>> = reader.look_up_all(refs).await?;
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
