//! `scan`: the auditor's report of one account and Region, judged now without reporting to
//! Config. Reads only; with `--hsm` it also asks the HSM which key materials it holds.

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
    it is unknown.")]
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
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitStatus> {
    let ScanArgs {
        resource_types: types,
        key_reader_role_name,
        max_key_age_days,
        allow_aws_managed_keys,
        format,
        output,
        now,
        hsm,
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
    let text = match format.as_str() {
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
