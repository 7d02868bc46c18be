//! The naive boto3 evaluator on the same estate (scripts/bench_baseline.py).

use super::*;

/// The boto3 baseline, reaching each service through the same endpoint variables (and
/// so the same moto processes and proxies) as the Rust sweeps.
pub(crate) fn baseline(endpoints: &Endpoints) -> Result<Value> {
    let python = Path::new(ROOT).join(".tools/venv/bin/python");
    let out = Command::new(python)
        .arg(Path::new(ROOT).join("scripts/bench_baseline.py"))
        .args(["--account", WORKLOAD, "--reader-role", READER_ROLE])
        .envs(aws_env(endpoints))
        .stderr(Stdio::inherit())
        .output()
        .context("run scripts/bench_baseline.py")?;
    if !out.status.success() {
        bail!("the baseline failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("baseline output")
}
