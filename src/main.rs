//! The operator CLI's entry point: parse the command line, run the command (src/cli/), turn
//! its outcome into the exit status. Nothing else lives here.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::exit::ExitStatus;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logs(cli.verbose, matches!(cli.command, Command::Demo(_)));
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitStatus::Error.into();
        }
    };
    match rt.block_on(cli::run(cli.command)) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitStatus::Error.into()
        }
    }
}
