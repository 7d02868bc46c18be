//! `keys`: the runbook's inventory — every KMS key of this account in the given Regions, what
//! the runbook needs to know about it, and what it points out (docs/runbook.md). Reads only.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::runbook::inventory::{self, InventoryPolicy};
use kms_rotation_guard::runbook::usage::ResourceUsage;

use super::exit::ExitStatus;
use super::hsm_args::{open_source, HsmArgs};
use super::parse_now;

/// Every KMS key of this account in the given Regions: origin, aliases, Environment and
/// service tags, guard tag, material age, the earliest expiry of any material, on-demand
/// rotations left, custody; with a scan, the resources on each key.
#[derive(clap::Args)]
#[command(after_help = "Points out: keys no resource uses (needs --resources), imported keys without the guard tag \
    kms-rotation-guard, keys in a custom key store, keys with few on-demand rotations left, material expiring within \
    expiryWarningDays, current material the HSM does not hold (needs --hsm). Exit 1 when it points anything out, \
    3 when a Region or key could not be read.\n\nExamples:\n  \
    kms-rotation-guard keys --regions eu-west-1,eu-central-1\n  \
    kms-rotation-guard scan --format json --output scan.json && \\\n    \
    kms-rotation-guard keys --resources scan.json --format html --output keys.html")]
#[command(mut_arg("hsm", |a| a.required(false)))]
pub struct KeysArgs {
    /// Regions to list (comma-separated); default: the current Region.
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// A `scan --format json` export (one account, or the organization's): which resources use each key.
    #[arg(long)]
    pub resources: Option<PathBuf>,
    /// Point out keys with fewer on-demand rotations left than this.
    #[arg(long, default_value_t = 5)]
    pub min_rotations_left: u32,
    /// The rule parameters (rotation tag, expiry warning) as a JSON object; default: the rule's defaults.
    #[arg(long)]
    pub rule_parameters: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "json", "html"])]
    pub format: String,
    /// Same as --format json.
    #[arg(long, hide = true)]
    pub json: bool,
    /// Write here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Judge ages and expiries as of this time (RFC 3339).
    #[arg(long)]
    pub now: Option<String>,
    /// The HSM that keeps the key material: whether it holds each key's current material.
    #[command(flatten)]
    pub hsm: Option<HsmArgs>,
}

pub async fn run(args: KeysArgs) -> anyhow::Result<ExitStatus> {
    let now = parse_now(args.now.as_deref())?;
    let params = RuleParams::parse(args.rule_parameters.as_deref())?;
    let usage = match &args.resources {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            Some((ResourceUsage::parse(&bytes)?, p.display().to_string()))
        }
    };
    let source = args.hsm.as_ref().map(open_source).transpose()?;
    let aws = Aws::from_env().await;
    let identity = aws.sts().get_caller_identity().send().await.context("sts:GetCallerIdentity failed")?;
    let account = identity.account().ok_or_else(|| anyhow!("GetCallerIdentity returned no account"))?.to_string();
    let regions = if args.regions.is_empty() { vec![aws.region()] } else { args.regions.clone() };
    let progress = std::io::stderr().is_terminal().then(|| {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(std::time::Duration::from_millis(120));
        p
    });
    let say = |m: &str| {
        if let Some(p) = &progress {
            p.set_message(m.to_string());
        }
    };
    let policy = InventoryPolicy { params, min_rotations_left: args.min_rotations_left };
    let inv = inventory::read(
        &aws,
        &account,
        &regions,
        source.as_deref(),
        usage.as_ref().map(|(u, from)| (u, from.clone())),
        &policy,
        now,
        &say,
    )
    .await?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let format = if args.json { "json" } else { args.format.as_str() };
    let text = match format {
        "json" => inventory::json(&inv),
        "html" => inventory::html(&inv),
        _ => inventory::table(&inv),
    };
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(if !inv.complete() {
        ExitStatus::Incomplete
    } else if inv.findings() > 0 {
        ExitStatus::Findings
    } else {
        ExitStatus::Ok
    })
}
