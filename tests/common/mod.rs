//! Test harness: real local AWS emulators, started per test and killed on drop.
//!
//! moto (server mode) plays every workload-side service; tools come from `.tools/`,
//! installed by `scripts/setup`. A missing tool fails the test with that instruction.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;
use kms_rotation_guard::aws::{Aws, CallCounter};

pub mod fault_proxy;
pub mod json;
pub mod org_events;
pub mod seed;

pub const REGION: &str = "eu-west-1";
/// moto's default account: the workload account in these tests.
pub const WORKLOAD: &str = "123456789012";
/// The central security account holding the keys.
pub const SECURITY: &str = "111111111111";
pub const READER_ROLE: &str = "kms-rotation-guard-key-reader";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by scripts/setup.
pub fn tool(venv: &str, name: &str) -> PathBuf {
    let p = root().join(".tools").join(venv).join("bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup (the README's test command does)", p.display());
    p
}

/// A free loopback port, never handed out twice in this process (tests run in parallel
/// and the kernel may offer a just-released port again).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Sends a child's stdout and stderr to `log`, a file in the test's temporary directory, so
/// that a failure to start can show what the emulator said (`wait_until_ready`).
pub fn output_to<'a>(cmd: &'a mut Command, log: &Path) -> &'a mut Command {
    let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
    let err = out.try_clone().expect("log file handle");
    cmd.stdout(out).stderr(err)
}

/// The last `n` lines of an emulator's output, for a failure message.
pub fn output_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    if tail.trim().is_empty() {
        "(no output)".into()
    } else {
        tail
    }
}

/// Waits until `ready()` holds. If `child` exits first, or `limit` passes, fails the test
/// with the last 30 lines of the emulator's output (`log`, written through `output_to`).
pub fn wait_until_ready(child: &mut Child, what: &str, log: &Path, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}; the last lines of its output:\n{}", output_tail(log, 30));
        }
        if start.elapsed() >= limit {
            panic!("{what} was not ready within {limit:?}; the last lines of its output:\n{}", output_tail(log, 30));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `port` accepts connections (see `wait_until_ready`).
pub fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path, limit: Duration) {
    wait_until_ready(child, what, log, limit, || TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// A moto server on a free port; killed when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
    /// Holds the server's output (`moto.log`).
    _dir: tempdir::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_in(None)
    }

    /// `account` pins the server's default account (MOTO_ACCOUNT_ID).
    pub fn start_in(account: Option<&str>) -> Moto {
        let port = free_port();
        let dir = tempdir::TempDir::new("moto");
        let log = dir.path().join("moto.log");
        let mut cmd = Command::new(tool("venv", "moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        output_to(&mut cmd, &log);
        if let Some(a) = account {
            cmd.env("MOTO_ACCOUNT_ID", a);
        }
        let mut child = cmd.spawn().expect("start moto_server");
        wait_for_port(port, &mut child, "moto_server", &log, Duration::from_secs(30));
        Moto { child, port, endpoint: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// Environment for a child process (the CLI) to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_MAX_ATTEMPTS", "2".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK configuration for `endpoint` with static credentials, so the SDK never probes
/// instance metadata, and two attempts per call to keep failure tests quick.
pub async fn sdk_config(endpoint: &str, creds: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(kms_rotation_guard::aws::timeouts())
        .load()
        .await
}

pub fn static_creds() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

/// The workload account's view, with a call counter.
pub async fn workload(endpoint: &str) -> (Aws, CallCounter) {
    let counter = CallCounter::default();
    (Aws::new(sdk_config(endpoint, static_creds()).await).with_counter(counter.clone()), counter)
}

/// Credentials acting in `account` (moto: an assumed role's credentials act there).
pub async fn assumed(endpoint: &str, account: &str) -> Aws {
    let base = Aws::new(sdk_config(endpoint, static_creds()).await);
    let out = base
        .sts()
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/admin"))
        .role_session_name("seed")
        .send()
        .await
        .expect("assume role");
    let c = out.credentials().unwrap();
    let creds =
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().into()), None, "seed");
    Aws::new(sdk_config(endpoint, creds).await)
}

pub fn days_from_now(days: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(days)
}

pub fn ymd(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// LocalStack's KMS (host mode, `.tools/ls-venv`): the only emulator with BYOK import.
/// Its own temporary state directory (everything it writes, its output in `localstack.log`
/// included); killed with its process group on drop, since it does not stop on SIGTERM.
pub struct LocalStack {
    child: Child,
    pub endpoint: String,
    _state: tempdir::TempDir,
}

impl LocalStack {
    pub fn start() -> LocalStack {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let state = tempdir::TempDir::new("localstack");
        let log = state.path().join("localstack.log");
        // The shared, read-only service catalog (see `localstack_catalog`), where host mode
        // looks for the one its Docker image builds in.
        std::fs::create_dir_all(state.path().join("usr/lib")).unwrap();
        std::os::unix::fs::symlink(localstack_catalog(), state.path().join("usr/lib/localstack")).unwrap();
        let mut cmd = Command::new(tool("ls-venv", "python"));
        cmd.args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SERVICES", "kms,sts")
            .env("FILESYSTEM_ROOT", state.path())
            .env("LOCALSTACK_CLI", "0")
            // Inside any container (CI, this project's machines) LocalStack takes itself to be
            // its own Docker image and ignores FILESYSTEM_ROOT: every instance then shares
            // /tmp/localstack (each removes it as it starts) and /var/lib/localstack/cache (each
            // writes its TLS key and certificate there as it starts, and the first ones build
            // the service catalog there), and, where a DNS server answers, binds port 53 and
            // rewrites /etc/resolv.conf (never restored: we SIGKILL it). Tests start several at
            // once, so: host mode (all state under FILESYSTEM_ROOT), no DNS server, and a local
            // certificate instead of a download.
            .env("OVERRIDE_IN_DOCKER", "0")
            .env("DNS_ADDRESS", "0")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .process_group(0);
        output_to(&mut cmd, &log);
        let mut child = cmd.spawn().expect("start LocalStack");
        wait_for_port(port, &mut child, "LocalStack", &log, Duration::from_secs(60));
        let endpoint = format!("http://127.0.0.1:{port}");
        // The port opens before KMS is served: wait until the health endpoint answers.
        let health = format!("{endpoint}/_localstack/health");
        wait_until_ready(&mut child, "LocalStack", &log, Duration::from_secs(60), || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &health])
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false)
        });
        LocalStack { child, endpoint, _state: state }
    }
}

/// LocalStack's service catalog (its index of every AWS API), built once per installed
/// LocalStack into target/ and shared read-only by every instance. Without it each instance
/// builds its own on its first request: 10–13 s on a loaded 2-core machine, past the SDK's
/// 10 s attempt timeout. LocalStack's Docker image builds it the same way
/// (`python -m localstack.aws.spec`). Returns the directory host mode reads it from
/// (`<FILESYSTEM_ROOT>/usr/lib/localstack`).
fn localstack_catalog() -> &'static Path {
    use std::hash::{Hash, Hasher};
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        // One catalog per LocalStack installation (scripts/setup's stamp names its versions).
        let stamp = std::fs::read_to_string(root().join(".tools/ls-venv/.stamp")).unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        stamp.hash(&mut h);
        let built = root().join(format!("target/localstack-catalog-{:016x}", h.finish()));
        let lib = built.join("usr/lib/localstack");
        let has_catalog = |dir: &Path| {
            std::fs::read_dir(dir).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".dill")))
        };
        if has_catalog(&lib).unwrap_or(false) {
            return lib;
        }
        // Built aside, then renamed into place: test binaries of other worktrees or runs may
        // do the same at the same time, and the first rename wins.
        let scratch = tempdir::TempDir::new("localstack-catalog");
        std::fs::create_dir_all(scratch.path().join("usr/lib/localstack")).unwrap();
        let log = scratch.path().join("build.log");
        let mut cmd = Command::new(tool("ls-venv", "python"));
        cmd.args(["-m", "localstack.aws.spec"])
            .env("FILESYSTEM_ROOT", scratch.path())
            .env("OVERRIDE_IN_DOCKER", "0")
            .env("LOCALSTACK_CLI", "0");
        output_to(&mut cmd, &log);
        let status = cmd.status().expect("build LocalStack's service catalog");
        assert!(status.success(), "building LocalStack's service catalog: {status}\n{}", output_tail(&log, 30));
        let _ = std::fs::rename(scratch.path(), &built);
        assert!(has_catalog(&lib).unwrap_or(false), "no service catalog in {}", lib.display());
        lib
    })
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        // SIGKILL the process itself, then its group (helpers it may have started).
        let _ = self.child.kill();
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory under target/tmp, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = super::root().join("target/tmp").join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One SoftHSM2 token per test process (PKCS#11 is initialised once per process), made by
/// scripts/softhsm-token in a directory of its own.
pub fn softhsm() -> &'static kms_rotation_guard::rotation::hsm::Pkcs11Source {
    use kms_rotation_guard::rotation::hsm::{HsmPin, Pkcs11Source};
    static SOURCE: std::sync::OnceLock<Pkcs11Source> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let dir = root().join("target/tmp").join(format!("softhsm-{}", std::process::id()));
        let out = Command::new(root().join("scripts/softhsm-token"))
            .args([dir.to_str().unwrap(), "rotation-tests", "5678", SOFTHSM_PIN])
            .output()
            .expect("scripts/softhsm-token");
        assert!(out.status.success(), "softhsm-token: {}", String::from_utf8_lossy(&out.stderr));
        let conf = String::from_utf8(out.stdout).unwrap().trim().to_string();
        std::env::set_var("SOFTHSM2_CONF", conf);
        Pkcs11Source::open(SOFTHSM_MODULE, "rotation-tests", &HsmPin::new(SOFTHSM_PIN)).expect("open SoftHSM token")
    })
}

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const SOFTHSM_PIN: &str = "86420135";

/// The (operation, request body) pairs a fake endpoint saw.
pub type Recorded = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// A JSON-protocol AWS endpoint on loopback (KMS, Config, …) answering with `reply`, which
/// gets the operation (the `X-Amz-Target` action, lower case) and the request body and
/// returns the HTTP status and the body AWS's API reference gives. Returns the endpoint
/// and the (operation, body) pairs seen.
pub fn fake_json_endpoint(
    mut reply: impl FnMut(&str, &serde_json::Value) -> (u16, serde_json::Value) + Send + 'static,
) -> (String, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let (mut target, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-amz-target:") {
                    target = v.trim().rsplit('.').next().unwrap_or("").to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let (status, answer) = reply(&target, &request);
            log.lock().unwrap().push((target, request));
            let answer = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (endpoint, seen)
}

/// An AWS Config endpoint answering in the API reference's shape, for what moto's Config
/// cannot do: serves `pages` in order to GetResourceConfigHistory and
/// GetComplianceDetailsByConfigRule, and an empty success to anything else (PutEvaluations,
/// StartConfigRulesEvaluation). Returns the endpoint and the (operation, body) pairs seen.
pub fn fake_config(pages: Vec<serde_json::Value>) -> (String, Recorded) {
    let mut pages = pages.into_iter();
    fake_json_endpoint(move |target, _| match target {
        "getresourceconfighistory" | "getcompliancedetailsbyconfigrule" => {
            (200, pages.next().unwrap_or(serde_json::json!({"configurationItems": []})))
        }
        _ => (200, serde_json::json!({"FailedEvaluations": []})),
    })
}
