//! `retire`: the key an alias swap replaced, out of use and then deleted, one reversible
//! step per run, with the retirement role (retirement.yaml; docs/runbook.md).

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::runbook::retire;
use kms_rotation_guard::runbook::usage::ResourceUsage;

use super::exit::ExitStatus;
use super::hsm_args::{open_source, HsmArgs};
use super::parse_now;

/// Retire a key that an alias swap replaced: disable it once nothing uses it; after the grace
/// period schedule its deletion (30 days); after KMS deleted it, destroy its HSM objects.
#[derive(clap::Args)]
#[command(after_help = "Each run takes one step and says what the next is. Checks before disabling, in order: a \
    successor is recorded; no resource uses the key per the latest scan (--resources, at most a day old); CloudTrail \
    shows no successful use for --grace-days. Run it with the retirement role (retirement.yaml). Exit 0: the step was \
    taken (or there is nothing to do yet); 1: refused (the message says why).\n\nExamples:\n  \
    kms-rotation-guard scan --accounts organization --format json --output scan.json\n  \
    kms-rotation-guard retire --key 1234abcd-… --grace-days 30 --resources scan.json\n  \
    KRG_PKCS11_PIN=... kms-rotation-guard retire --key arn:aws:kms:…:key/1234abcd-… --grace-days 30 --hsm pkcs11 \\\n      \
    --pkcs11-module /opt/cloudhsm/lib/libcloudhsm_pkcs11.so --token-label byok   # after KMS deleted it")]
#[command(mut_arg("hsm", |a| a.required(false)))]
pub struct RetireArgs {
    /// The replaced key's id or ARN (not an alias: an alias names the key in use).
    #[arg(long)]
    pub key: String,
    /// Days with no successful use before disabling, and days disabled before deletion (1 to 90).
    #[arg(long)]
    pub grace_days: i64,
    /// The latest `scan --format json` export (one account or the organization).
    #[arg(long)]
    pub resources: Option<PathBuf>,
    /// The HSM, for the last step: destroying the objects of a key KMS has deleted.
    #[command(flatten)]
    pub hsm: Option<HsmArgs>,
    /// Say what would happen and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Judge as of this time (RFC 3339).
    #[arg(long)]
    pub now: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

pub async fn run(args: RetireArgs) -> anyhow::Result<ExitStatus> {
    let now = parse_now(args.now.as_deref())?;
    let usage = match &args.resources {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let modified =
                std::fs::metadata(p).and_then(|m| m.modified()).ok().map(chrono::DateTime::<chrono::Utc>::from);
            Some((ResourceUsage::parse(&bytes)?, modified))
        }
    };
    let source = args.hsm.as_ref().map(open_source).transpose()?;
    let aws = Aws::from_env().await;
    let identity = aws.sts().get_caller_identity().send().await.context("sts:GetCallerIdentity failed")?;
    let account = identity.account().ok_or_else(|| anyhow!("GetCallerIdentity returned no account"))?.to_string();
    let report = match retire::run(
        &aws,
        &account,
        &args.key,
        args.grace_days,
        usage.as_ref().map(|(u, t)| (u, *t)),
        source.as_deref(),
        args.dry_run,
        now,
    )
    .await
    {
        Ok(r) => r,
        Err(e) if e.is_refusal() => {
            eprintln!("{e}");
            return Ok(ExitStatus::Findings);
        }
        Err(e) => return Err(e.into()),
    };
    if args.json || args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: {}", report.outcome, report.message);
        for d in &report.destroyed {
            println!("  destroyed {d}");
        }
    }
    Ok(ExitStatus::Ok)
}
