//! The operator CLI: the same library the Lambda handlers run.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rule::Rule;
use kms_rotation_guard::{event, handler};

#[derive(Parser)]
#[command(name = "kms-rotation-guard", version, about = "Prove KMS key material is rotated in time; rotate it safely")]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a rule handler on a Config event file, exactly as Lambda would, and print one
    /// JSON object per evaluation.
    #[command(after_help = "Examples:\n  kms-rotation-guard evaluate --event events/s3-change.json\n  \
        kms-rotation-guard evaluate --event events/periodic-rds.json --now 2026-11-23T00:00:00Z")]
    Evaluate {
        /// The Lambda payload (a Config rule event).
        #[arg(long)]
        event: PathBuf,
        /// The rule to run (rds, dynamodb, s3); inferred from the event when omitted.
        #[arg(long)]
        rule: Option<String>,
        /// Fix the clock (RFC 3339) for reproducible runs.
        #[arg(long)]
        now: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn parse_now(now: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    match now {
        None => Ok(Utc::now()),
        Some(s) => event::parse_time(s)
            .ok_or_else(|| anyhow!("--now {s:?} is not an RFC 3339 time (e.g. 2026-11-23T00:00:00Z)")),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Evaluate { event: path, rule, now } => {
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
            for e in &outcome.evaluations {
                println!("{}", serde_json::to_string(e)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
