//! `reimport`: material the HSM kept, imported again after KMS lost it (expiry, or
//! DeleteImportedKeyMaterial), or while KMS still has it, with a later expiry. Spends no
//! rotation and creates no new material.

use anyhow::anyhow;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rotation::{Expiration, ReimportRequest, Rotator};

use super::exit::ExitStatus;
use super::format::chosen;
use super::hsm_args::{open_source, HsmArgs};

/// Import kept material again (after expiry or DeleteImportedKeyMaterial): GetParametersForImport,
/// wrap inside the HSM, ImportKeyMaterial with EXISTING_KEY_MATERIAL and its KeyMaterialId.
#[derive(clap::Args)]
#[command(after_help = "Without --key-material-id, every material KMS lists as PENDING_IMPORT (and, with \
    --valid-to or --no-expiry, every material that expires).\n\nMaterial about to expire takes the whole key with \
    it: give it a later date while KMS still has it (the rule's annotation names the command).\n\nExamples:\n  \
    KRG_PKCS11_PIN=... kms-rotation-guard reimport --key alias/prod-s3 --hsm pkcs11 \\\n      \
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok --dry-run\n  \
    kms-rotation-guard reimport --key alias/prod-s3 --key-material-id 8f1b2c3d4e5f6071 --valid-to 2027-11-30 \
    --hsm pkcs11 ...")]
pub struct ReimportArgs {
    /// Alias, alias ARN, key id or key ARN.
    #[arg(long)]
    pub key: String,
    /// The material to import again (its KeyMaterialId, or a unique prefix of at least 8 hex
    /// digits); default: every one KMS says needs it.
    #[arg(long)]
    pub key_material_id: Option<String>,
    /// A new expiry (YYYY-MM-DD or RFC 3339; KMS allows at most 365 days ahead): the fix for
    /// material about to expire. Default: the material does not expire.
    #[arg(long, conflicts_with = "no_expiry")]
    pub valid_to: Option<String>,
    /// Import with KEY_MATERIAL_DOES_NOT_EXPIRE (the default for material waiting for import);
    /// without --key-material-id it also takes every material that expires.
    #[arg(long)]
    pub no_expiry: bool,
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// Pin a wrapping algorithm; default: the strongest the HSM can do.
    #[arg(long)]
    pub wrapping_algorithm: Option<String>,
    /// RSA_2048, RSA_3072 or RSA_4096.
    #[arg(long, default_value = "RSA_4096")]
    pub wrapping_key_spec: String,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// table (for people) or json (one document, for scripts).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

pub async fn run(args: ReimportArgs) -> anyhow::Result<ExitStatus> {
    let ReimportArgs {
        key,
        key_material_id,
        valid_to,
        no_expiry,
        hsm,
        wrapping_algorithm,
        wrapping_key_spec,
        dry_run,
        format,
        json,
    } = args;
    // Checked before the HSM is opened or a PIN read.
    let expiry = match (valid_to, no_expiry) {
        (Some(v), _) => Some(Expiration::On(
            kms_rotation_guard::verdict::parse_rotation_date(&v)
                .ok_or_else(|| anyhow!("--valid-to {v:?} is not a date (YYYY-MM-DD or RFC 3339)"))?,
        )),
        (None, true) => Some(Expiration::Never),
        (None, false) => None,
    };
    let aws = Aws::from_env().await;
    let source = open_source(&hsm)?;
    let rotator = Rotator::new(&aws, source.as_ref())
        .wrapping(wrapping_algorithm.map(|a| a.parse()).transpose()?, wrapping_key_spec.parse()?)
        .on_step(|step, text| eprintln!("==> {step:?}: {text}"));
    let report = rotator.reimport(&ReimportRequest { key, key_material_id, dry_run, expiry }).await?;
    if chosen(&format, json) == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitStatus::Ok)
}
