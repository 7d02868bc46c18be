//! `rollback`: after an alias swap, the alias goes back to the key it replaced; after an
//! in-place rotation, it says why there is nothing to undo and changes nothing; given a key
//! `retire` took out of use, it makes it usable again (docs/runbook.md).

use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::runbook::rollback;

use super::exit::ExitStatus;

/// Point an alias back at the key an alias swap replaced (re-enabling it if needed), or
/// bring back a key `retire` disabled. Idempotent; an in-place rotation changes nothing.
#[derive(clap::Args)]
#[command(after_help = "Run it with the retirement role (retirement.yaml). Exit 0: rolled back (or already); \
    1: nothing rolled back (in place, or refused; the message says why).\n\nExamples:\n  \
    kms-rotation-guard rollback --key alias/prod-s3\n  \
    kms-rotation-guard rollback --key arn:aws:kms:eu-west-1:111122223333:key/1234abcd-…   # undo retire")]
pub struct RollbackArgs {
    /// The alias (after an alias swap), or the key id/ARN of a key `retire` disabled.
    #[arg(long)]
    pub key: String,
    /// Say what would happen and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

pub async fn run(args: RollbackArgs) -> anyhow::Result<ExitStatus> {
    let aws = Aws::from_env().await;
    let record = match rollback::run(&aws, &args.key, args.dry_run).await {
        Ok(r) => r,
        Err(e) if e.is_refusal() => {
            eprintln!("{e}");
            return Ok(ExitStatus::Findings);
        }
        Err(e) => return Err(e.into()),
    };
    if args.json || args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!("{}: {}", record.outcome, record.message);
    }
    Ok(if record.outcome.starts_with("in-place") { ExitStatus::Findings } else { ExitStatus::Ok })
}
