//! tests/fault_proxy.py (mitmdump) in front of an emulator, answering with AWS's own response
//! bodies where the emulator differs from AWS: `aws_errors` entries either answer a request
//! outright ({"match", "status", "body"}) or deep-merge a `patch` into the emulator's JSON
//! reply ({"match", "patch"}). No random faults. Killed on drop.

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
    /// Reverse proxy to `target` (e.g. `http://127.0.0.1:4566`) with these answers.
    pub fn start(target: &str, answers: &Value) -> AnsweringProxy {
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
            .args(["--set", &format!("aws_errors={answers}")])
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

    /// How often each answer (by its index in the list) was given.
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

/// A KMS JSON-protocol success body, as `aws_errors` answers it.
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
