//! No false verdict under faults.
//!
//! - `faults_never_become_verdicts`: the sample events' estate in moto, evaluated once
//!   fault-free, then again and again through a mitmproxy (tests/fault_proxy.py) that
//!   throttles (in each protocol's shape), answers 500/503, drops connections and holds
//!   requests past the client's attempt timeout on 20% of requests. Every run must give
//!   exactly the fault-free evaluations or fail with a clear, transient error.
//! - `a_denied_tag_read_is_never_compliant`: moto with IAM enforcement on; an evaluator
//!   user allowed everything it needs except one KMS read gets NON_COMPLIANT naming
//!   that action, whatever the rule parameters.
//!
//! Run with `--nocapture` to see the figures.//!
//! One test binary: `sweep` (named denials), `throttling`, `iam_denial` and `codeless`;
//! this file holds the fault proxy and the helpers they share.

mod codeless;
#[path = "../common/mod.rs"]
mod common;
mod iam_denial;
mod sweep;
mod throttling;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::types::OriginType;
use chrono::{DateTime, Utc};
use common::seed;
use common::*;
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::report::Evaluation;
use kms_rotation_guard::rule::{self, Rule};
use kms_rotation_guard::verdict::Compliance;
use kms_rotation_guard::{handler, Error};
use serde_json::Value;

fn sample(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(root().join("events").join(name)).unwrap()).unwrap()
}

/// The client's attempt timeout; the proxy's delay fault holds a request for twice that.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const FAULT_DELAY: Duration = Duration::from_secs(2);

/// The product's SDK setup, scaled down so faults resolve in seconds: standard retry mode
/// with 3 attempts (short backoff), 1 s connect and attempt timeouts.
async fn faulty_aws(endpoint: &str) -> (Aws, CallCounter) {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(static_creds())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_millis(500)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(ATTEMPT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .load()
        .await;
    let counter = CallCounter::default();
    (Aws::new(config).with_counter(counter.clone()), counter)
}

/// mitmdump running tests/fault_proxy.py in front of `target`; killed on drop.
struct FaultProxy {
    child: Child,
    endpoint: String,
    stats: PathBuf,
    /// mitmproxy's home (its CA) and output (`mitmdump.log`), one per proxy.
    _dir: tempdir::TempDir,
}

impl FaultProxy {
    fn start(target_port: u16, rate: f64, seed: u64, kinds: &str) -> FaultProxy {
        FaultProxy::start_matching(target_port, rate, seed, kinds, "")
    }

    /// Faults only requests whose X-Amz-Target, form body or path contains one of the
    /// comma-separated `matching` substrings.
    fn start_matching(target_port: u16, rate: f64, seed: u64, kinds: &str, matching: &str) -> FaultProxy {
        FaultProxy::start_full(target_port, rate, seed, kinds, matching, &serde_json::json!([]))
    }

    /// No random faults; `aws_errors` answers named resources with AWS's own error bodies.
    fn answering(target_port: u16, aws_errors: &Value) -> FaultProxy {
        FaultProxy::start_full(target_port, 0.0, 0, "throttle", "", aws_errors)
    }

    fn start_full(
        target_port: u16,
        rate: f64,
        seed: u64,
        kinds: &str,
        matching: &str,
        aws_errors: &Value,
    ) -> FaultProxy {
        let port = free_port();
        let dir = tempdir::TempDir::new("fault-proxy");
        let stats = dir.path().join("stats.json");
        let log = dir.path().join("mitmdump.log");
        let mut cmd = Command::new(tool("venv", "mitmdump"));
        cmd.args(["-q", "--mode", &format!("reverse:http://127.0.0.1:{target_port}")])
            .args(["--listen-host", "127.0.0.1", "--listen-port", &port.to_string()])
            .args(["-s", root().join("tests/fault_proxy.py").to_str().unwrap()])
            .args(["--set", "keep_host_header=true"])
            .args(["--set", &format!("fault_rate={rate}")])
            .args(["--set", &format!("fault_seed={seed}")])
            .args(["--set", &format!("fault_kinds={kinds}")])
            .args(["--set", &format!("fault_match={matching}")])
            .args(["--set", &format!("aws_errors={aws_errors}")])
            .args(["--set", &format!("fault_delay={}", FAULT_DELAY.as_secs_f64())])
            .args(["--set", &format!("stats_file={}", stats.display())])
            // mitmproxy writes its CA under the home directory: one of its own, so that two
            // proxies starting at once on a fresh clone do not race to create the same files.
            .env("HOME", dir.path());
        output_to(&mut cmd, &log);
        let mut child = cmd.spawn().expect("start mitmdump");
        wait_for_port(port, &mut child, "mitmdump", &log, Duration::from_secs(30));
        FaultProxy { child, endpoint: format!("http://127.0.0.1:{port}"), stats, _dir: dir }
    }

    /// The proxy's counts: {"requests", "faults": {kind: n}, "throttle_shapes", "total_faults"}.
    fn stats(&self) -> Value {
        std::fs::read(&self.stats)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({"requests": 0, "faults": {}, "total_faults": 0}))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Evaluations in a stable order, for comparing runs.
fn sorted(mut e: Vec<Evaluation>) -> Vec<Evaluation> {
    e.sort_by(|a, b| {
        (&a.resource_type, &a.resource_id, &a.annotation, a.compliance.as_str()).cmp(&(
            &b.resource_type,
            &b.resource_id,
            &b.annotation,
            b.compliance.as_str(),
        ))
    });
    e
}

/// A clear failure: transient (so Config retries it) and naming the AWS call.
fn clear(e: &Error) -> bool {
    let text = e.to_string();
    let names_call = ["kms:", "sts:", "s3:", "rds:", "dynamodb:", "config:"].iter().any(|p| text.contains(p));
    e.is_transient() && names_call
}
