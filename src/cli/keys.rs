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
    #[arg(long, conflicts_with = "accounts")]
    pub resources: Option<PathBuf>,
    /// Scan these accounts now for the resources on each key: `organization` (every active
    /// account) or account ids separated by commas, in the same Regions (docs/organization.md).
    #[arg(long)]
    pub accounts: Option<String>,
    /// The role read in each member account (member-role.yaml).
    #[arg(long, default_value = kms_rotation_guard::estate::member::DEFAULT_MEMBER_ROLE, requires = "accounts")]
    pub member_role_name: String,
    /// Point out keys with fewer on-demand rotations left than this.
    #[arg(long, default_value_t = 5)]
    pub min_rotations_left: u32,
    /// The rule parameters (rotation tag, expiry warning) as a JSON object; default: the rule's defaults.
    #[arg(long)]
    pub rule_parameters: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "json", "html"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
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
    let usage = match (&args.accounts, usage) {
        (Some(wanted), _) => {
            Some(scan_usage(&aws, wanted, &args.member_role_name, &account, &regions, &params, now).await?)
        }
        (None, u) => u,
    };
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

/// The organization scan (`--accounts`): who uses which key, as the scan's own export says.
async fn scan_usage(
    aws: &Aws,
    wanted: &str,
    member_role: &str,
    own: &str,
    regions: &[String],
    params: &RuleParams,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(ResourceUsage, String)> {
    use kms_rotation_guard::estate::{self, export, EstateSpec, MemberRole, ScanHeader};
    use kms_rotation_guard::resource::ResourceType;
    let role = MemberRole::new(member_role)?;
    let accounts: Vec<String> = match wanted.trim() {
        "organization" => estate::organization_accounts(aws)
            .await
            .context("--accounts organization lists the accounts with Organizations ListAccounts")?
            .into_iter()
            .map(|a| a.id)
            .collect(),
        list => {
            let ids: Vec<String> = list.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
            if let Some(bad) = ids.iter().find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit())) {
                return Err(anyhow!("--accounts: {bad:?} is not a 12-digit account id"));
            }
            if ids.is_empty() {
                return Err(anyhow!("--accounts: give `organization` or account ids separated by commas"));
            }
            ids
        }
    };
    let spec = EstateSpec {
        accounts: accounts.clone(),
        regions: regions.to_vec(),
        member_role: Some(role.clone()),
        own_account: own.to_string(),
        resource_types: ResourceType::ALL.to_vec(),
        concurrency: estate::DEFAULT_CONCURRENCY,
    };
    let scan = estate::scan(aws, &spec, params, now, &|_| {}).await?;
    let header =
        ScanHeader { scan_time: now, accounts, regions: regions.to_vec(), source: format!("assume-role:{role}") };
    // The export is the one contract between the scan and the runbook: read it as a file would be.
    let usage = ResourceUsage::parse(export::json(&scan, &header).as_bytes())?;
    Ok((usage, format!("an organization scan of {} account(s) ({})", header.accounts.len(), header.source)))
}
