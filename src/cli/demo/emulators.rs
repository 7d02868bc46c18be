//! The demo's processes: LocalStack and moto started on free ports and killed with their
//! process groups when dropped, and a throwaway SoftHSM2 token. Nothing here is used
//! outside the demo, and nothing outlives it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use aws_config::{BehaviorVersion, Region};

use super::REGION;

/// A process the demo started; killed (with its process group) when dropped, so the demo
/// leaves nothing running however it ends.
pub(super) struct Service {
    name: &'static str,
    child: Child,
    pub(super) endpoint: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
        tracing::debug!(service = self.name, "stopped");
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(super) fn start(name: &'static str, mut cmd: Command, port: u16, health: &str) -> anyhow::Result<Service> {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {name} (run scripts/setup)"))?;
    let mut service = Service { name, child, endpoint: format!("http://127.0.0.1:{port}") };
    let started = Instant::now();
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!("{name} exited at start with {status}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && http_ok(port, health) {
            return Ok(service);
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("{name} did not answer on port {port} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bare HTTP/1.0 GET: is the emulator serving yet (not just listening)?
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") && &buf[9..12] == b"200"
}

pub(super) async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new("demo", "demo", None, None, "demo"))
        .timeout_config(kms_rotation_guard::aws::timeouts())
        .load()
        .await
}

pub(super) fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kms-rotation-guard-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tokens"))?;
    Ok(dir)
}

/// A fresh SoftHSM2 token with a random PIN, in the demo's own directory.
pub(super) fn softhsm_token(dir: &Path) -> anyhow::Result<PathBuf> {
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )?;
    let mut pin = [0u8; 8];
    getrandom::fill(&mut pin).map_err(|e| anyhow!("no randomness: {e}"))?;
    let pin: String = pin.iter().map(|b| char::from(b'0' + b % 10)).collect();
    std::fs::write(dir.join("pin"), &pin)?;
    // A throwaway development token: its PINs on softhsm2-util's command line are acceptable.
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "kms-rotation-guard-demo", "--so-pin", "12345678", "--pin", &pin])
        .output()
        .context("softhsm2-util not found: run scripts/setup")?;
    if !out.status.success() {
        bail!("softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(conf)
}
