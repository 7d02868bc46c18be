//! `evaluate`: one Config event file through a rule handler, exactly as Lambda runs it.
//! Prints what the handler would send to Config; it must not judge differently from the
//! Lambda (it calls the same `handler::handle`).

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::report::Evaluation;
use kms_rotation_guard::rule::Rule;
use kms_rotation_guard::{event, handler};

use super::exit::ExitStatus;
use super::format::chosen;
use super::parse_now;

/// Run a rule handler on a Config event file, exactly as Lambda would, and print one
/// JSON object per evaluation (or a table with --format table).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  kms-rotation-guard evaluate --event events/s3-change.json\n  \
    kms-rotation-guard evaluate --event events/periodic-rds.json --now 2026-11-23T00:00:00Z")]
pub struct EvaluateArgs {
    /// The Lambda payload (a Config rule event).
    #[arg(long)]
    pub event: PathBuf,
    /// The rule to run (rds, dynamodb, s3); inferred from the event when omitted.
    #[arg(long)]
    pub rule: Option<String>,
    /// Fix the clock (RFC 3339) for reproducible runs.
    #[arg(long)]
    pub now: Option<String>,
    /// json (one object per evaluation, a line each, as sent to Config) or table (for people).
    #[arg(long, default_value = "json", value_parser = ["json", "table"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

pub async fn run(args: EvaluateArgs) -> anyhow::Result<ExitStatus> {
    let EvaluateArgs { event: path, rule, now, format, json } = args;
    let now = parse_now(now.as_deref())?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let inv = event::parse_bytes(&bytes)?;
    let rule = match rule {
        Some(r) => Rule::find(&r).ok_or_else(|| anyhow!("unknown rule {r:?}: use rds, dynamodb or s3"))?,
        None => infer_rule(&inv)?,
    };
    let payload: serde_json::Value = serde_json::from_slice(&bytes)?;
    let aws = Aws::from_env().await;
    let outcome = handler::handle(&aws, rule, payload, now, None).await?;
    if chosen(&format, json) == "table" {
        print!("{}", table(&outcome.evaluations));
        return Ok(ExitStatus::Ok);
    }
    for e in &outcome.evaluations {
        println!("{}", serde_json::to_string(e)?);
    }
    Ok(ExitStatus::Ok)
}

/// The evaluations as aligned columns; the annotation last, since it is the long one.
fn table(evaluations: &[Evaluation]) -> String {
    let head = ["RESOURCE TYPE", "RESOURCE ID", "COMPLIANCE"];
    let rows: Vec<[&str; 4]> = evaluations
        .iter()
        .map(|e| [e.resource_type.as_str(), e.resource_id.as_str(), e.compliance.as_str(), e.annotation.as_str()])
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = format!("{:<w0$}  {:<w1$}  {:<w2$}  ANNOTATION\n", head[0], head[1], head[2]);
    for r in &rows {
        out.push_str(&format!("{:<w0$}  {:<w1$}  {:<w2$}  {}\n", r[0], r[1], r[2], r[3]));
    }
    out
}

/// The rule for an event: by the resource type of a change, else by the rule name.
fn infer_rule(inv: &event::Invocation) -> anyhow::Result<Rule> {
    let by_type = match &inv.trigger {
        event::Trigger::Change { item, .. } => {
            item.get("resourceType").and_then(|t| t.as_str()).and_then(Rule::for_type)
        }
        event::Trigger::Oversized { summary } => Rule::for_type(&summary.resource_type),
        event::Trigger::Periodic { .. } => None,
    };
    by_type
        .or_else(|| {
            inv.rule_name().and_then(|n| kms_rotation_guard::rule::ALL.into_iter().find(|r| n.contains(r.name)))
        })
        .ok_or_else(|| anyhow!("cannot tell which rule this event is for: pass --rule rds|dynamodb|s3"))
}
