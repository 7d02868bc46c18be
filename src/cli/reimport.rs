//! `reimport`: material the HSM kept, imported again after KMS lost it (expiry, or
//! DeleteImportedKeyMaterial). Spends no rotation and creates no new material.

use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rotation::{ReimportRequest, Rotator};

use super::exit::ExitStatus;
use super::hsm_args::{open_source, HsmArgs};

/// Import kept material again (after expiry or DeleteImportedKeyMaterial): GetParametersForImport,
/// wrap inside the HSM, ImportKeyMaterial with EXISTING_KEY_MATERIAL and its KeyMaterialId.
#[derive(clap::Args)]
#[command(after_help = "Without --key-material-id, every material KMS lists as PENDING_IMPORT.\n\nExample:\n  \
    KRG_PKCS11_PIN=... kms-rotation-guard reimport --key alias/prod-s3 --hsm pkcs11 \\\n      \
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok --dry-run")]
pub struct ReimportArgs {
    /// Alias, alias ARN, key id or key ARN.
    #[arg(long)]
    pub key: String,
    /// The material to import again; default: every one KMS says needs it.
    #[arg(long)]
    pub key_material_id: Option<String>,
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
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ReimportArgs) -> anyhow::Result<ExitStatus> {
    let ReimportArgs { key, key_material_id, hsm, wrapping_algorithm, wrapping_key_spec, dry_run, json } = args;
    let aws = Aws::from_env().await;
    let source = open_source(&hsm)?;
    let rotator = Rotator::new(&aws, source.as_ref())
        .wrapping(wrapping_algorithm.map(|a| a.parse()).transpose()?, wrapping_key_spec.parse()?)
        .on_step(|step, text| eprintln!("==> {step:?}: {text}"));
    let report = rotator.reimport(&ReimportRequest { key, key_material_id, dry_run }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitStatus::Ok)
}
