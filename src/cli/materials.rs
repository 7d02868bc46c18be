//! `materials`: every key material KMS lists for a key, against what the HSM holds. Reads
//! only; "NOT HELD" material is a finding (exit 1), because it cannot be imported again.

use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rotation::Rotator;

use super::exit::ExitStatus;
use super::format::chosen;
use super::hsm_args::{open_source, HsmArgs};

/// Every key material KMS lists for a key (ListKeyRotations, ALL_KEY_MATERIAL): its
/// state, dates, and whether the HSM holds it. "NOT HELD" material cannot be imported again.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  KRG_PKCS11_PIN=... kms-rotation-guard materials --key alias/prod-s3 --hsm pkcs11 \\\n      \
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok"
)]
pub struct MaterialsArgs {
    /// Alias, alias ARN, key id or key ARN.
    #[arg(long)]
    pub key: String,
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// table (for people) or json (one document, for scripts).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

pub async fn run(args: MaterialsArgs) -> anyhow::Result<ExitStatus> {
    let MaterialsArgs { key, hsm, format, json } = args;
    let aws = Aws::from_env().await;
    let source = open_source(&hsm)?;
    let report = Rotator::new(&aws, source.as_ref()).materials_report(&key).await?;
    if chosen(&format, json) == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    // Exit 1 when KMS is the only holder of some material: an operator must see it.
    Ok(if report.has_findings() { ExitStatus::Findings } else { ExitStatus::Ok })
}
