//! The operator CLI, a module of the binary (never of the library, so the Lambdas carry none
//! of it): the top-level command line, and one file per command holding its clap arguments
//! and its body. Commands call the same library the Lambda handlers run; none judges on its
//! own. Every command returns an [`exit::ExitStatus`], one table for all ([`exit::HELP`], shown
//! by the top-level `--help`), and takes `--format` (`table` or `json`, plus `csv` and `html`
//! where they apply; the older `--json` stays as a hidden alias).
//!
//! A new command: one file `src/cli/<command>.rs` with its `Args` struct and
//! `pub async fn run(args) -> anyhow::Result<ExitStatus>`, one variant in [`Command`] and one
//! dispatch line in [`run`].

pub mod campaign;
pub mod demo;
pub mod evaluate;
pub mod exit;
pub mod format;
pub mod hsm_args;
pub mod keys;
pub mod materials;
pub mod reimport;
pub mod retire;
pub mod rollback;
pub mod rotate;
pub mod scan;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use kms_rotation_guard::event;

use exit::ExitStatus;

#[derive(Parser)]
#[command(
    name = "kms-rotation-guard",
    version,
    about = "Prove KMS key material is rotated in time; rotate it safely",
    after_help = exit::HELP
)]
pub struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Evaluate(evaluate::EvaluateArgs),
    Scan(scan::ScanArgs),
    Demo(demo::DemoArgs),
    Rotate(rotate::RotateArgs),
    Materials(materials::MaterialsArgs),
    Reimport(reimport::ReimportArgs),
    Keys(keys::KeysArgs),
    Campaign(campaign::CampaignArgs),
    Rollback(rollback::RollbackArgs),
    Retire(retire::RetireArgs),
}

/// Runs one command.
pub async fn run(command: Command) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Evaluate(args) => evaluate::run(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Rotate(args) => rotate::run(args).await,
        Command::Materials(args) => materials::run(args).await,
        Command::Reimport(args) => reimport::run(args).await,
        Command::Keys(args) => keys::run(args).await,
        Command::Campaign(args) => campaign::run(args).await,
        Command::Rollback(args) => rollback::run(args).await,
        Command::Retire(args) => retire::run(args).await,
    }
}

pub fn init_logs(verbose: u8, demo: bool) {
    kms_rotation_guard::logging::init_cli(match verbose {
        // The demo names the emulators' gaps itself, once, in plain words; the rotation's
        // per-key warning about the same gap would repeat it between the tables.
        0 if demo => "warn,kms_rotation_guard::rotation=error",
        0 => "warn",
        1 => "debug",
        _ => "trace",
    });
}

/// `--now` (and other times given on the command line): RFC 3339, or now when absent.
pub fn parse_now(now: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    match now {
        None => Ok(Utc::now()),
        Some(s) => event::parse_time(s)
            .ok_or_else(|| anyhow!("--now {s:?} is not an RFC 3339 time (e.g. 2026-11-23T00:00:00Z)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks (conflicts, groups, defaults name real arguments).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
