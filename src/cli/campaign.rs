//! `campaign plan|run`: rotate in waves (dev → int → prod by default) inside a maintenance
//! window, through the same gate as `rotate`, soaking and watching after each wave
//! (docs/runbook.md). `plan` changes nothing.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::remediation;
use kms_rotation_guard::rotation::{RotationRequest, Rotator};
use kms_rotation_guard::runbook::campaign::{self, check_change_id, Campaign, PlanFile, RunSettings};

use super::exit::ExitStatus;
use super::hsm_args::{open_source, HsmArgs};

/// Rotate the keys that need it in waves: plan (changes nothing) or run.
#[derive(clap::Args)]
pub struct CampaignArgs {
    /// plan or run (optional here so that clap checks --format first; `run` says it is missing).
    #[command(subcommand)]
    pub command: Option<CampaignCommand>,
    /// table (for people) or json (one document, for scripts).
    #[arg(long, global = true, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, global = true, hide = true, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Every key in its wave with its verdict, rotations left and what would happen. Changes nothing.
    #[command(after_help = "Examples:\n  kms-rotation-guard campaign plan\n  \
        kms-rotation-guard campaign plan --plan campaign.toml --change-id CHG-1234 --format json")]
    Plan(PlanArgs),
    /// Take the waves one after another: window, gate, rotate, re-evaluate, soak and watch.
    #[command(
        after_help = "Stops at the first failure (a rotation error, or a failed use of a rotated key during the \
        soak) and says what to do; a second run with the same --change-id resumes and rotates nothing twice. \
        Exit 0: every wave done and quiet; 1: stopped, or some key refused by the gate; 2: error.\n\nExample:\n  \
        KRG_PKCS11_PIN=... kms-rotation-guard campaign run --plan campaign.toml --change-id CHG-1234 --hsm pkcs11 \\\n      \
        --pkcs11-module /opt/cloudhsm/lib/libcloudhsm_pkcs11.so --token-label byok"
    )]
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The plan file (TOML; docs/runbook.md); default: waves dev, int, prod by the Environment tag.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The change ticket: keys already rotated under it show as done.
    #[arg(long)]
    pub change_id: Option<String>,
    /// Minutes to soak after each wave (overrides the plan file; default 30).
    #[arg(long)]
    pub soak_minutes: Option<u64>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The change ticket (e.g. CHG-1234): written into every rotation record, key tag and audit line.
    #[arg(long)]
    pub change_id: String,
    #[arg(long)]
    pub soak_minutes: Option<u64>,
    /// Pin a wrapping algorithm; default: the strongest the HSM can do.
    #[arg(long)]
    pub wrapping_algorithm: Option<String>,
    #[arg(long, default_value = "RSA_4096")]
    pub wrapping_key_spec: String,
    #[command(flatten)]
    pub hsm: HsmArgs,
}

fn load(plan: Option<&PathBuf>, soak: Option<u64>) -> anyhow::Result<Campaign> {
    let file = match plan {
        None => PlanFile::default(),
        Some(p) => {
            PlanFile::parse(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?)?
        }
    };
    Ok(file.resolve(soak)?)
}

pub async fn run(args: CampaignArgs) -> anyhow::Result<ExitStatus> {
    let json = args.json || args.format == "json";
    match args.command {
        Some(CampaignCommand::Plan(a)) => plan(a, json).await,
        Some(CampaignCommand::Run(a)) => run_waves(a, json).await,
        None => Err(anyhow::anyhow!("campaign: give `plan` or `run` (kms-rotation-guard campaign --help)")),
    }
}

async fn plan(a: PlanArgs, json: bool) -> anyhow::Result<ExitStatus> {
    let c = load(a.plan.as_ref(), a.soak_minutes)?;
    if let Some(id) = &a.change_id {
        check_change_id(id)?;
    }
    let aws = Aws::from_env().await;
    let candidates = campaign::candidates(&aws, &c, Utc::now()).await?;
    let p = campaign::plan(&candidates, &c, a.change_id.as_deref());
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", campaign::plan_table(&p));
    }
    Ok(if p.problems().is_empty() { ExitStatus::Ok } else { ExitStatus::Findings })
}

async fn run_waves(a: RunArgs, json: bool) -> anyhow::Result<ExitStatus> {
    let c = load(a.plan.as_ref(), a.soak_minutes)?;
    check_change_id(&a.change_id)?;
    let request = RotationRequest {
        wrapping_algorithm: a.wrapping_algorithm.as_deref().map(str::parse).transpose()?,
        wrapping_key_spec: a.wrapping_key_spec.parse()?,
        ..RotationRequest::new("")
    };
    // Opened before any AWS call: a wrong PIN or token fails before the campaign starts.
    let source = open_source(&a.hsm)?;
    let aws = Aws::from_env().await;
    let candidates = campaign::candidates(&aws, &c, Utc::now()).await?;
    let p = campaign::plan(&candidates, &c, Some(&a.change_id));
    let say = |m: &str| eprintln!("==> {m}");
    let rotator = Rotator::new(&aws, source.as_ref()).on_step(|step, text| eprintln!("    {step:?}: {text}"));
    let settings = RunSettings {
        change_id: a.change_id.clone(),
        request,
        claim_settle: remediation::DEFAULT_CLAIM_SETTLE,
        say: &say,
    };
    let report = match campaign::run(&aws, &rotator, &c, &p, &settings).await {
        Ok(r) => r,
        Err(e) if e.is_refusal() => {
            eprintln!("{e}");
            return Ok(ExitStatus::Findings);
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.stopped.is_some() || report.refused() > 0 { ExitStatus::Findings } else { ExitStatus::Ok })
}
