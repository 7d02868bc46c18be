//! tests/fault_proxy.py (mitmproxy) in front of an emulator, answering named requests with
//! AWS's own error bodies: what moto never produces (a role that does not exist or does not
//! trust the caller, a denied read). Killed on drop.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, root, tool};

pub struct AnsweringProxy {
    child: Child,
    pub endpoint: String,
    stats: PathBuf,
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
        let dir = root().join("target/tmp");
        std::fs::create_dir_all(&dir).unwrap();
        let stats = dir.join(format!("answering-proxy-{}-{port}.json", std::process::id()));
        let _ = std::fs::remove_file(&stats);
        let mut child = Command::new(tool("venv", "mitmdump"))
            .args(["-q", "--mode", &format!("reverse:{target}")])
            .args(["--listen-host", "127.0.0.1", "--listen-port", &port.to_string()])
            .args(["-s", root().join("tests/fault_proxy.py").to_str().unwrap()])
            .args(["--set", "keep_host_header=true", "--set", "fault_rate=0"])
            .args(["--set", &format!("aws_errors={aws_errors}")])
            .args(["--set", &format!("stats_file={}", stats.display())])
            // mitmproxy writes its CA under the home directory; keep it out of the user's.
            .env("HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mitmdump");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mitmdump exited early with {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mitmdump did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        AnsweringProxy { child, endpoint: format!("http://127.0.0.1:{port}"), stats }
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
        let _ = std::fs::remove_file(&self.stats);
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
