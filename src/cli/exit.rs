//! The exit status of every command, in one place, so that scripts and schedulers can rely
//! on one meaning per number whatever the command:
//!
//! | status | meaning                                                                          |
//! |--------|----------------------------------------------------------------------------------|
//! | 0      | ok: everything judged is compliant, or the action completed                      |
//! | 1      | findings: something is non-compliant, material is NOT HELD, or a refusal a user must act on |
//! | 2      | error: bad input, or an AWS or HSM failure                                       |
//! | 3      | incomplete coverage: some account × Region or key could not be read (the report says which) |
//!
//! Commands return an [`ExitStatus`]; none invents its own number.

use std::process::ExitCode;

/// The table as the top-level `--help` shows it (after_help).
pub const HELP: &str = "Exit status (every command):
  0  ok: everything judged is compliant, or the action completed
  1  findings: something is non-compliant, material is NOT HELD, or a refusal you must act on
  2  error: bad input, or an AWS or HSM failure
  3  incomplete coverage: some account x Region or key could not be read (the report says which)";

/// What a command's run means to the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: all compliant, or the action completed.
    Ok = 0,
    /// 1: findings a person must act on.
    Findings = 1,
    /// 2: bad input, or an AWS or HSM failure.
    Error = 2,
    /// 3: the judgement is incomplete: part of the estate could not be read (`scan --accounts`).
    Incomplete = 3,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s as u8)
    }
}
