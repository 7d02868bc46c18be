//! `scan`: the auditor's report of one account and Region, or (`--accounts`) of the
//! organization's accounts × Regions as one estate, judged now without reporting to Config.
//! Reads only; with `--hsm` it also asks the HSM which key materials it holds.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use kms_rotation_guard::audit::{self, AuditRow};
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::handler;
use kms_rotation_guard::key::Home;
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::resource::ResourceType;

use super::exit::ExitStatus;
use super::format::chosen;
use super::hsm_args::{open_source, HsmArgs};
use super::parse_now;

/// The auditor's report: judge every resource of this account and region now, without
/// reporting to Config. Exit status 0 when all are compliant, 1 when any is not, 2 on error.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  kms-rotation-guard scan --format table\n  \
    kms-rotation-guard scan --resource-types AWS::S3::Bucket --key-reader-role-name kms-rotation-guard-key-reader \\\n      \
    --format csv --output audit.csv\n  \
    kms-rotation-guard scan --format html --output report.html   # one self-contained page for the auditor\n  \
    KRG_PKCS11_PIN=... kms-rotation-guard scan --format html --output report.html --hsm pkcs11 \\\n      \
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok   # and whether the HSM holds each key's material\n\n\
    With --hsm, each imported (EXTERNAL) key of this account is asked once whether the HSM holds its current \
    material (hsmHoldsMaterial; \"held\" / \"NOT HELD\" in the HTML). Without it, or where that cannot be read, \
    it is unknown.\n\n    The organization (docs/organization.md):\n      kms-rotation-guard scan --accounts organization --regions eu-west-1,eu-central-1 \\\n          --member-role-name kms-rotation-guard-member --key-reader-role-name kms-rotation-guard-key-reader \\\n          --format html --output estate.html\n      kms-rotation-guard scan --accounts 111122223333,444455556666 --format json\n      kms-rotation-guard scan --accounts organization --aggregator org-aggregator --format csv\n\n    With --accounts, each member account is read through --member-role-name (member-role.yaml), the     scanner's own account with its own credentials. The coverage table says which account x Region     was not scanned and why; exit status 3 when any was not (or a key could not be read), which takes     precedence over 1: a partial view certifies nothing.")]
// `--hsm` is required by `materials` and `reimport`, optional here (clap#5092).
#[command(mut_arg("hsm", |a| a.required(false)))]
pub struct ScanArgs {
    /// Resource types to scan (default: all four).
    #[arg(long, num_args = 1.., value_parser = ["AWS::RDS::DBInstance", "AWS::RDS::DBCluster", "AWS::DynamoDB::Table", "AWS::S3::Bucket"])]
    pub resource_types: Vec<String>,
    /// Role assumed in each key account to read keys of other accounts.
    #[arg(long)]
    pub key_reader_role_name: Option<String>,
    #[arg(long, default_value_t = 365)]
    pub max_key_age_days: i64,
    /// Accept AWS-managed keys.
    #[arg(long)]
    pub allow_aws_managed_keys: bool,
    /// html: one self-contained page with the key-age picture and the JSON payload's SHA-256.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "html"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
    /// Write the report here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Judge as of this time (RFC 3339).
    #[arg(long)]
    pub now: Option<String>,
    /// The HSM that keeps the key material: the report then says whether it holds each
    /// key's current material.
    #[command(flatten)]
    pub hsm: Option<HsmArgs>,
    /// The organization: `organization` (every ACTIVE account, Organizations ListAccounts) or
    /// account ids separated by commas. Without it: this account only.
    #[arg(long, value_name = "organization|ID,ID,…")]
    pub accounts: Option<String>,
    /// Regions to scan with --accounts (default: the configured Region).
    #[arg(long, value_delimiter = ',', requires = "accounts")]
    pub regions: Vec<String>,
    /// The role assumed in each member account (member-role.yaml).
    #[arg(long, default_value = kms_rotation_guard::estate::member::DEFAULT_MEMBER_ROLE, requires = "accounts")]
    pub member_role_name: String,
    /// Read the estate through this Config aggregator (one query per resource type) instead of
    /// assuming a role in each account.
    #[arg(long, requires = "accounts")]
    pub aggregator: Option<String>,
    /// Account × Region units enumerated at once.
    #[arg(long, default_value_t = kms_rotation_guard::estate::DEFAULT_CONCURRENCY, requires = "accounts")]
    pub concurrency: usize,
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitStatus> {
    if args.accounts.is_some() {
        return estate(args).await;
    }
    let ScanArgs {
        resource_types: types,
        key_reader_role_name,
        max_key_age_days,
        allow_aws_managed_keys,
        format,
        json,
        output,
        now,
        hsm,
        ..
    } = args;
    let now = parse_now(now.as_deref())?;
    // The same validation as the rules' parameters.
    let mut raw =
        serde_json::json!({ "maxKeyAgeDays": max_key_age_days, "allowAwsManagedKeys": allow_aws_managed_keys });
    if let Some(r) = key_reader_role_name {
        raw["keyReaderRoleName"] = r.into();
    }
    let params = RuleParams::from_value(&raw)?;
    let types: Vec<ResourceType> = if types.is_empty() {
        ResourceType::ALL.to_vec()
    } else {
        types.iter().filter_map(|t| ResourceType::parse(t)).collect()
    };
    // Opened first: a wrong PIN or token label fails before the scan, not after it.
    let source = hsm.as_ref().map(open_source).transpose()?;
    let aws = Aws::from_env().await;
    let identity = aws.sts().get_caller_identity().send().await.context("sts:GetCallerIdentity failed")?;
    let account = identity.account().ok_or_else(|| anyhow!("GetCallerIdentity returned no account"))?;
    let home = Home::new(aws.region(), account);

    let progress = std::io::stderr().is_terminal().then(|| {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(std::time::Duration::from_millis(120));
        p.set_message(format!("listing resources in {account} {}", home.region));
        p
    });
    let resources = handler::enumerate(&aws, &types, &home).await?;
    if let Some(p) = &progress {
        p.set_message(format!("judging {} resources", resources.len()));
    }
    let assessments = handler::assess(&aws, &params, account, resources, now).await?;
    let mut rows: Vec<AuditRow> = assessments.iter().map(|a| AuditRow::new(a, &params, now)).collect();
    let mut notes = Vec::new();
    if let Some(source) = &source {
        if let Some(p) = &progress {
            p.set_message("asking the HSM which key materials it holds");
        }
        let rotator = kms_rotation_guard::rotation::Rotator::new(&aws, source.as_ref());
        notes = audit::fill_custody(&mut rows, &rotator, account).await;
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    for note in notes {
        eprintln!("warning: {note}");
    }
    let text = match chosen(&format, json) {
        "json" => audit::json(&rows),
        "csv" => audit::csv(&rows),
        "html" => {
            let header = audit::html::ReportHeader::new(vec![account.to_string()], &home.region, now, &params);
            audit::html::render(&header, &rows)
        }
        _ => audit::table(&rows, output.is_none() && audit::colour_stdout()),
    };
    match &output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    let non_compliant = rows.iter().any(|r| r.compliance == kms_rotation_guard::verdict::Compliance::NonCompliant);
    Ok(if non_compliant { ExitStatus::Findings } else { ExitStatus::Ok })
}

/// The rule parameters of a scan, validated as the rules' are.
fn params(args: &ScanArgs) -> anyhow::Result<RuleParams> {
    let mut raw = serde_json::json!({ "maxKeyAgeDays": args.max_key_age_days, "allowAwsManagedKeys": args.allow_aws_managed_keys });
    if let Some(r) = &args.key_reader_role_name {
        raw["keyReaderRoleName"] = r.clone().into();
    }
    Ok(RuleParams::from_value(&raw)?)
}

/// `--accounts`: the estate, one report.
async fn estate(args: ScanArgs) -> anyhow::Result<ExitStatus> {
    use kms_rotation_guard::estate::{self, export, report, EstateSpec, MemberRole, Progress, ScanHeader};

    let now = parse_now(args.now.as_deref())?;
    let params = params(&args)?;
    let types: Vec<ResourceType> = if args.resource_types.is_empty() {
        ResourceType::ALL.to_vec()
    } else {
        args.resource_types.iter().filter_map(|t| ResourceType::parse(t)).collect()
    };
    let member_role = MemberRole::new(&args.member_role_name)?;
    let wanted = args.accounts.as_deref().unwrap_or_default().trim();
    let listed: Option<Vec<String>> = match wanted {
        "organization" => None,
        list => {
            let ids: Vec<String> = list.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
            if ids.is_empty() {
                return Err(anyhow!("--accounts: give `organization` or account ids separated by commas"));
            }
            if let Some(bad) = ids.iter().find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit())) {
                return Err(anyhow!("--accounts: {bad:?} is not a 12-digit account id"));
            }
            Some(ids)
        }
    };
    if args.concurrency == 0 {
        return Err(anyhow!("--concurrency must be at least 1"));
    }
    // Opened first: a wrong PIN or token label fails before the scan, not after it.
    let source = args.hsm.as_ref().map(open_source).transpose()?;
    let aws = Aws::from_env().await;
    let identity = aws.sts().get_caller_identity().send().await.context("sts:GetCallerIdentity failed")?;
    let own = identity.account().ok_or_else(|| anyhow!("GetCallerIdentity returned no account"))?.to_string();
    let accounts = match listed {
        Some(ids) => ids,
        None => estate::organization_accounts(&aws)
            .await
            .context("--accounts organization lists the accounts with Organizations ListAccounts")?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    let mut regions: Vec<String> =
        args.regions.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
    if regions.is_empty() {
        regions.push(aws.region());
    }
    let spec = EstateSpec {
        accounts: accounts.clone(),
        regions: regions.clone(),
        member_role: Some(member_role.clone()),
        own_account: own.clone(),
        resource_types: types,
        concurrency: args.concurrency,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let p = indicatif::ProgressBar::new(0);
        p.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} account × Region · {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        p
    });
    let progress = |p: Progress| {
        if let Some(b) = &bar {
            b.set_length(p.units_total as u64);
            b.set_position(p.units_done as u64);
            b.set_message(format!("{} resources", p.resources));
        }
    };
    let (mut scan, source_name) = match &args.aggregator {
        Some(name) => {
            (estate::aggregator::scan(&aws, name, &spec, &params, now, &progress).await?, format!("aggregator:{name}"))
        }
        None => (estate::scan(&aws, &spec, &params, now, &progress).await?, format!("assume-role:{member_role}")),
    };
    if let Some(source) = &source {
        let rotator = kms_rotation_guard::rotation::Rotator::new(&aws, source.as_ref());
        for note in audit::fill_custody(&mut scan.rows, &rotator, &own).await {
            eprintln!("warning: {note}");
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let header = ScanHeader { scan_time: now, accounts, regions, source: source_name };
    let not_seen: Vec<String> = scan
        .coverage
        .iter()
        .filter(|c| c.status != estate::CoverageStatus::Scanned)
        .map(|c| format!("{} {} {}: {}", c.account, c.region, c.status.as_str(), c.reason.as_deref().unwrap_or("")))
        .chain(
            scan.unjudged
                .iter()
                .map(|u| format!("{} {} {} {}: {}", u.account, u.region, u.resource_type, u.resource_id, u.reason)),
        )
        .collect();
    let text = match args.format.as_str() {
        "json" => export::json(&scan, &header),
        "csv" => audit::csv(&scan.rows),
        "html" => {
            let json_path = args.output.as_ref().map(|o| o.with_extension("json"));
            let json_name = json_path
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "estate.json".into());
            let page = report::render(&header, &scan, &params, &json_name);
            if !page.embedded {
                let path = json_path.ok_or_else(|| {
                    anyhow!(
                        "the export is too large to embed in the page: give --output so it can be written next to it"
                    )
                })?;
                std::fs::write(&path, &page.json).with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("the JSON export the page's SHA-256 covers: {}", path.display());
            }
            page.html
        }
        _ => {
            let mut t = audit::table(&scan.rows, args.output.is_none() && audit::colour_stdout());
            if !not_seen.is_empty() {
                t.push_str("\nNOT SEEN (no verdict)\n");
                for line in &not_seen {
                    t.push_str(line);
                    t.push('\n');
                }
            }
            t
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    if !not_seen.is_empty() {
        eprintln!("incomplete: {} account × Region or resource not seen (see the coverage)", not_seen.len());
    }
    let non_compliant = scan.rows.iter().any(|r| r.compliance == kms_rotation_guard::verdict::Compliance::NonCompliant);
    Ok(if !scan.complete() {
        ExitStatus::Incomplete
    } else if non_compliant {
        ExitStatus::Findings
    } else {
        ExitStatus::Ok
    })
}
