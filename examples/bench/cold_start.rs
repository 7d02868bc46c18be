//! The Lambda cold start against a minimal Runtime API, and the artifact sizes.

use super::*;

pub(crate) const NEXT: &str = "GET /2018-06-01/runtime/invocation/next";

/// Spawns the Lambda binary against a minimal Runtime API and times spawn → first
/// `GET …/invocation/next`. One discarded warm-up start (page cache), then `runs`.
pub(crate) fn cold_starts(bin: &Path, runs: usize, extra_env: &[(&str, String)]) -> Result<Value> {
    if !bin.exists() {
        bail!("{} is missing: build it first (scripts/bench does)", bin.display());
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api = listener.local_addr()?.to_string();
    let log = out_dir().join("coldstart.log");
    let mut times = Vec::new();
    let mut rss_at_poll = Vec::new();
    for i in 0..=runs {
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, String, TcpStream)>();
        let l = listener.try_clone()?;
        let acceptor = std::thread::spawn(move || {
            if let Ok((stream, _)) = l.accept() {
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                // The rest of the head, so the request is complete when timed.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let _ = tx.send((Instant::now(), first.trim_end().to_string(), stream));
            }
        });
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let start = Instant::now();
        let mut child = Command::new(bin)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "kms-rotation-s3")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench/stream")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/kms-rotation-s3")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing")
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let got = rx.recv_timeout(Duration::from_secs(10));
        let rss = proc_status_kib(&child.id().to_string(), "VmHWM");
        let _ = child.kill();
        let _ = child.wait();
        match got {
            Ok((at, first, _stream)) => {
                if !first.starts_with(NEXT) {
                    bail!("the first runtime API request was {first:?}, not {NEXT}");
                }
                if i > 0 {
                    times.push(at.duration_since(start).as_secs_f64() * 1000.0);
                    rss_at_poll.push(rss);
                }
            }
            Err(_) => {
                let _ = TcpStream::connect(&api); // unblock the acceptor
                bail!("{} never polled the runtime API within 10 s (see {})", bin.display(), log.display());
            }
        }
        let _ = acceptor.join();
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    let p90 = sorted[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    rss_at_poll.sort_unstable();
    let rss_median = rss_at_poll[rss_at_poll.len() / 2];
    Ok(json!({
        "binary": bin.file_name().unwrap().to_string_lossy(),
        "runs": n,
        "median_ms": median,
        "p90_ms": p90,
        "min_ms": sorted[0],
        "max_ms": sorted[n - 1],
        "all_ms": times,
        "rss_at_first_poll_kib_median": rss_median,
    }))
}

/// The CA-store choices of the SDK's rustls, timed the same way. The product's default
/// is the system's single bundle file (`aws::prefer_single_ca_bundle`); the alternative is
/// what rustls-native-certs loads without SSL_CERT_FILE: the bundle plus every file of the
/// certificate directories it probes. (webpki-roots is not offered: the SDK's TrustStore
/// takes PEM only, and compiled-in roots miss the image's CA updates.)
pub(crate) fn ca_store_choices(bin: &Path, runs: usize) -> Result<Value> {
    let dirs: Vec<&str> =
        ["/etc/ssl/certs", "/etc/pki/tls/certs"].into_iter().filter(|d| Path::new(d).is_dir()).collect();
    let files: usize = dirs.iter().map(|d| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0)).sum();
    let bundle = kms_rotation_guard::aws::single_ca_bundle(|_| None, |p| Path::new(p).is_file());
    let mut out = vec![json!({
        "choice": format!("single bundle {} (default)", bundle.unwrap_or("(none found)")),
        "median_ms": Value::Null,
    })];
    if let Some(b) = bundle {
        let native = cold_starts(bin, runs, &[("SSL_CERT_FILE", b.to_string()), ("SSL_CERT_DIR", dirs.join(":"))])?;
        out.push(json!({
            "choice": format!("bundle + {} files of {} (rustls-native-certs' probe)", files, dirs.join(", ")),
            "median_ms": native["median_ms"],
            "p90_ms": native["p90_ms"],
        }));
    }
    Ok(Value::Array(out))
}

// ───────────────────────────── artifacts ─────────────────────────────

pub(crate) const ZIP_PY: &str = r#"
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with zipfile.ZipFile(dst, "w") as z, open(src, "rb") as f:
    z.writestr(info, f.read(), compresslevel=9)
"#;

/// Each Lambda binary and a Lambda zip of it (`bootstrap` inside, mode 0755).
pub(crate) fn artifacts(profile: &Path) -> Result<Vec<Value>> {
    let python = Path::new(ROOT).join(".tools/venv/bin/python");
    let zips = out_dir().join("zips");
    std::fs::create_dir_all(&zips)?;
    let mut out = Vec::new();
    for name in ["rds-rule", "dynamodb-rule", "s3-rule", "rotation-remediation"] {
        let bin = profile.join(name);
        let Ok(meta) = std::fs::metadata(&bin) else {
            if name != "rotation-remediation" {
                bail!("{} is missing", bin.display());
            }
            continue;
        };
        let zip = zips.join(format!("{name}.zip"));
        let status = Command::new(&python).args(["-c", ZIP_PY]).arg(&bin).arg(&zip).status()?;
        if !status.success() {
            bail!("zipping {name} failed");
        }
        out.push(json!({
            "name": name,
            "binary_bytes": meta.len(),
            "zip_bytes": std::fs::metadata(&zip)?.len(),
            "zip": zip,
        }));
    }
    Ok(out)
}
