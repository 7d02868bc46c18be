//! tests/fault_proxy.py (mitmproxy) in front of an emulator, answering named requests with
//! AWS's own error bodies: what moto never produces (a role that does not exist or does not
//! trust the caller, a denied read). Killed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use super::{free_port, output_to, root, tempdir, tool, wait_for_port};

pub struct AnsweringProxy {
    child: Child,
    pub endpoint: String,
    stats: PathBuf,
    /// mitmproxy's home (its CA), its counts and its output (`mitmdump.log`).
    _dir: tempdir::TempDir,
}

impl AnsweringProxy {
    /// No random faults; each entry of `aws_errors` ({"match": [...], "status", "content_type",
    /// "body"}) answers every request containing all its `match` substrings.
    pub fn start(target_port: u16, aws_errors: &Value) -> AnsweringProxy {
        AnsweringProxy::start_at(&format!("http://127.0.0.1:{target_port}"), aws_errors)
    }

    /// The same in front of `target` (an endpoint URL, e.g. LocalStack's). Entries may also be
    /// {"match", "patch"}: the emulator's JSON reply with `patch` deep-merged into it (a field
    /// it does not return, such as DescribeKey's ValidTo).
    pub fn start_at(target: &str, aws_errors: &Value) -> AnsweringProxy {
        let port = free_port();
        let dir = tempdir::TempDir::new("answering-proxy");
        let stats = dir.path().join("stats.json");
        let log = dir.path().join("mitmdump.log");
        let mut cmd = Command::new(tool("venv", "mitmdump"));
        cmd.args(["-q", "--mode", &format!("reverse:{target}")])
            .args(["--listen-host", "127.0.0.1", "--listen-port", &port.to_string()])
            .args(["-s", root().join("tests/fault_proxy.py").to_str().unwrap()])
            .args(["--set", "keep_host_header=true", "--set", "fault_rate=0"])
            .args(["--set", &format!("aws_errors={aws_errors}")])
            .args(["--set", &format!("stats_file={}", stats.display())])
            // mitmproxy writes its CA under the home directory: one of its own, so that two
            // proxies starting at once on a fresh clone do not create the same files.
            .env("HOME", dir.path());
        output_to(&mut cmd, &log);
        let mut child = cmd.spawn().expect("start mitmdump");
        wait_for_port(port, &mut child, "mitmdump", &log, Duration::from_secs(30));
        AnsweringProxy { child, endpoint: format!("http://127.0.0.1:{port}"), stats, _dir: dir }
    }

    /// How often each `aws_errors` entry (by index) answered.
    pub fn answered(&self, index: usize) -> u64 {
        std::fs::read(&self.stats)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["aws_errors"][index.to_string()].as_u64())
            .unwrap_or(0)
    }
}

impl Drop for AnsweringProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// STS's answer to AssumeRole on a role that does not exist or does not trust the caller
/// (AWS does not say which): 403, query-protocol XML (STS API reference, AssumeRole
/// "Errors"; common error AccessDenied).
pub fn assume_role_denied(account: &str, role: &str) -> Value {
    serde_json::json!({
        "match": ["Action=AssumeRole", format!("{account}%3Arole%2F{role}")],
        "status": 403,
        "content_type": "text/xml",
        "body": format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/kms-rotation-guard-eu-west-1-s3/\
             kms-rotation-guard is not authorized to perform: sts:AssumeRole on resource: \
             arn:aws:iam::{account}:role/{role}</Message></Error>\
             <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
        ),
    })
}

/// A KMS JSON-protocol success body for the requests containing every `matching` substring,
/// as the API reference gives it (an answer the emulator cannot give: ListKeyRotations on
/// LocalStack, or with material on moto).
pub fn kms_reply(matching: &[&str], body: Value) -> Value {
    serde_json::json!({
        "match": matching,
        "status": 200,
        "content_type": "application/x-amz-json-1.1",
        "body": body.to_string(),
    })
}

/// Seconds since the epoch, as KMS's JSON protocol sends timestamps.
pub fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}
