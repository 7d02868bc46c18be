//! The Lambda binaries under a real Lambda Runtime API: cargo-lambda 1.9.2's
//! `cargo lambda watch --only-lambda-apis` (the PyPI wheel, `.tools/cargo-lambda-venv`,
//! installed by scripts/setup). Each binary is started as Lambda would start it, with
//! `AWS_LAMBDA_RUNTIME_API`, against moto; the test invokes good, malformed and
//! backend-down events through the emulator and checks the response or the error's
//! `errorType`, the single ERROR log line of each failure, and that the process keeps
//! serving after every failure.
//!
//! Periodic events: cargo-lambda 1.9.2 sends `lambda-runtime-deadline-ms` as a duration
//! (600000), not as the epoch time the Lambda Runtime API documents, so under it every
//! deadline lies in 1970. The product's deadline handling is right to refuse such a sweep
//! (it reports nothing rather than half an estate), so this test only checks that a periodic
//! event fails cleanly with `Deadline`; sweeps themselves are tested in tests/evaluator.rs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// `cargo lambda watch --only-lambda-apis` on a free port; killed on drop.
struct Emulator {
    child: Child,
    port: u16,
    /// Holds its output (`cargo-lambda.log`).
    _dir: tempdir::TempDir,
}

impl Emulator {
    fn start() -> Emulator {
        let port = free_port();
        let dir = tempdir::TempDir::new("cargo-lambda");
        let log = dir.path().join("cargo-lambda.log");
        let mut cmd = Command::new(tool("cargo-lambda-venv", "cargo-lambda"));
        cmd.args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(root());
        output_to(&mut cmd, &log);
        let mut child = cmd.spawn().expect("start cargo lambda watch");
        wait_for_port(port, &mut child, "cargo lambda watch", &log, Duration::from_secs(30));
        Emulator { child, port, _dir: dir }
    }

    /// Invokes `function` synchronously: (HTTP status, parsed body).
    fn invoke(&self, function: &str, payload: &Value) -> (u16, Value) {
        let body = payload.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let text = if chunked { dechunk(rest) } else { rest.to_string() };
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Lambda binary serving the emulator's queue for its function name; its stdout (the
/// JSON log) goes to a file.
struct Function {
    name: &'static str,
    child: Child,
    log: std::path::PathBuf,
}

impl Function {
    fn start(name: &'static str, exe: &str, emulator: &Emulator, env: &[(&str, String)], dir: &Path) -> Function {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(exe)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{}/.rt/{name}", emulator.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Function { name, child, log }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log_lines(&self) -> Vec<Value> {
        BufReader::new(std::fs::File::open(&self.log).unwrap())
            .lines()
            .map(|l| {
                let l = l.unwrap();
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("{}: not a JSON log line ({e}): {l}", self.name))
            })
            .collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event(file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(root().join("events").join(file)).unwrap()).unwrap()
}

/// Asserts a failed invocation: the error body's errorType, and a one-line message.
#[track_caller]
fn assert_error(what: &str, (status, body): (u16, Value), error_type: &str) -> String {
    assert_ne!(status, 200, "{what}: expected a failure, got {body}");
    assert_eq!(body["errorType"], error_type, "{what}: {body}");
    let msg = body["errorMessage"].as_str().unwrap_or_default().to_string();
    assert!(!msg.is_empty() && !msg.contains('\n'), "{what}: message must be one line: {msg:?}");
    for debug_form in ["DispatchFailure(", "ConnectorError {", "Box<dyn"] {
        assert!(!msg.contains(debug_form), "{what}: a Debug form leaked into the message: {msg}");
    }
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lambda_binary_answers_the_runtime_api_with_typed_errors_and_keeps_serving() {
    let mut moto = Some(Moto::start());
    seed::event_estate(moto.as_ref().unwrap()).await;
    let emulator = Emulator::start();
    let dir = tempdir::TempDir::new("runtime-api");
    let mut env = moto.as_ref().unwrap().env();
    // Keep backend-down failures quick: one retry against a closed port.
    env.retain(|(k, _)| *k != "AWS_MAX_ATTEMPTS");
    env.push(("AWS_MAX_ATTEMPTS", "2".into()));

    // Each rule with a good change event (TestMode result token) and its resource id.
    let rules: [(&str, &str, &str, &str); 3] = [
        ("rds-rule", env!("CARGO_BIN_EXE_rds-rule"), "rds-instance-change.json", "db-ORDERSPRODQ7ZXW3XK4JTN5LU2A"),
        ("dynamodb-rule", env!("CARGO_BIN_EXE_dynamodb-rule"), "dynamodb-table-change.json", "sessions"),
        ("s3-rule", env!("CARGO_BIN_EXE_s3-rule"), "s3-bucket-change.json", "invoices-prod"),
    ];
    let mut functions: Vec<Function> =
        rules.iter().map(|(name, exe, _, _)| Function::start(name, exe, &emulator, &env, dir.path())).collect();
    let mut remediation = Function::start(
        "rotation-remediation",
        env!("CARGO_BIN_EXE_rotation-remediation"),
        &emulator,
        &env,
        dir.path(),
    );
    let malformed = json!({ "not": "a Config event" });
    let mut failures = std::collections::BTreeMap::<&str, Vec<&str>>::new();

    for ((name, _, good, resource), f) in rules.iter().zip(functions.iter_mut()) {
        let (status, body) = emulator.invoke(name, &event(good));
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body, json!({ "evaluations": 1 }), "{name}");

        assert_error(name, emulator.invoke(name, &malformed), "MalformedEvent");
        assert!(f.alive(), "{name} died after a malformed event");

        let mut bad_params = event(good);
        bad_params["ruleParameters"] = json!("{\"maxKeyAgeDays\": \"soon\"}");
        assert_error(name, emulator.invoke(name, &bad_params), "InvalidParameter");

        // See the module comment: cargo-lambda's deadline is in 1970.
        let periodic = event(&format!("{}-periodic.json", name.trim_end_matches("-rule")));
        let msg = assert_error(name, emulator.invoke(name, &periodic), "Deadline");
        assert!(msg.contains("nothing was reported"), "{msg}");
        failures.entry(name).or_default().extend(["MalformedEvent", "InvalidParameter", "Deadline"]);

        let (status, body) = emulator.invoke(name, &event(good));
        assert_eq!((status, &body), (200, &json!({ "evaluations": 1 })), "{name} stopped serving after failures");

        // The verdicts are in the log at INFO, with resource, key, compliance and annotation.
        let verdicts: Vec<Value> = f.log_lines().into_iter().filter(|l| l["message"] == "verdict").collect();
        assert_eq!(verdicts.len(), 2, "{name}: one verdict line per good invocation");
        for v in &verdicts {
            assert_eq!(v["level"], "INFO");
            assert_eq!(v["resource"], *resource, "{v}");
            assert!(v["key"].as_str().is_some_and(|k| k.starts_with("arn:aws:kms:")), "{v}");
            assert!(v["compliance"].is_string() && v["annotation"].is_string(), "{v}");
        }
    }

    // The remediation: a payload the SSM document never sends, then a good payload on a
    // function whose HSM settings are missing. Both fail with their own type.
    assert_error("remediation", emulator.invoke("rotation-remediation", &json!({ "key": "x" })), "InvalidRequest");
    assert!(remediation.alive());
    assert_error(
        "remediation",
        emulator.invoke("rotation-remediation", &json!({ "keyId": "alias/prod-rds" })),
        "ConfigurationError",
    );
    assert!(remediation.alive());
    // Through the request bus (EventBridge's envelope, an asynchronous invocation): an event
    // that is not a rotation request is refused and answered as a success, so Lambda does
    // not retry what cannot change; no ERROR line, one audit line.
    let not_a_request = json!({"version": "0", "id": "e-1", "detail-type": "Other", "source": "someone.else",
        "account": "111122223333", "time": "2026-12-05T10:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": {"keyId": "alias/prod-rds"}});
    let (status, body) = emulator.invoke("rotation-remediation", &not_a_request);
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["status"], &body["errorType"]), (&json!("refused"), &json!("InvalidRequest")), "{body}");
    assert!(remediation.alive());
    let audit: Vec<(String, String)> = remediation
        .log_lines()
        .into_iter()
        .filter(|l| l["audit"] == "remediation")
        .map(|l| (l["outcome"].as_str().unwrap_or("?").to_string(), l["requester"].as_str().unwrap_or("?").to_string()))
        .collect();
    let want: Vec<(String, String)> = [("refused", "operator"), ("failed", "operator"), ("refused", "111122223333")]
        .iter()
        .map(|(o, r)| (o.to_string(), r.to_string()))
        .collect();
    assert_eq!(audit, want, "one audit line per remediation, who asked from the transport");
    failures.insert("rotation-remediation", vec!["InvalidRequest", "ConfigurationError"]);

    // The backend goes away: a transient failure, never a verdict, and the process lives on.
    drop(moto.take());
    for ((name, _, good, _), f) in rules.iter().zip(functions.iter_mut()) {
        let msg = assert_error(name, emulator.invoke(name, &event(good)), "TransientAwsError");
        assert!(msg.contains("Connection refused") || msg.contains("connect"), "{name}: {msg}");
        assert!(f.alive(), "{name} died with its backend");
        assert_error(name, emulator.invoke(name, &malformed), "MalformedEvent");
        failures.entry(name).or_default().extend(["TransientAwsError", "MalformedEvent"]);
    }

    // One ERROR line per failure, in Lambda's JSON log format, carrying the errorType.
    for f in functions.iter().chain([&remediation]) {
        let lines = f.log_lines();
        for l in &lines {
            for k in ["timestamp", "level", "message"] {
                assert!(l[k].is_string(), "{}: no top-level {k}: {l}", f.name);
            }
        }
        let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
        let types: Vec<&str> = errors.iter().map(|l| l["errorType"].as_str().unwrap_or("?")).collect();
        assert_eq!(types, failures[f.name], "{}: ERROR lines {errors:#?}", f.name);
        for e in &errors {
            assert!(e["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{}: no requestId: {e}", f.name);
        }
    }
}

/// Warm invocations reuse the key-reader role's credentials: two invocations of one
/// process (one `Aws`), one sts:AssumeRole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_invocations_assume_the_key_reader_role_once() {
    let moto = Moto::start();
    seed::event_estate(&moto).await;
    let (aws, counter) = workload(&moto.endpoint).await;
    let now = days_from_now(30);
    for _ in 0..2 {
        let out = kms_rotation_guard::handler::handle(
            &aws,
            kms_rotation_guard::rule::RDS,
            event("rds-instance-change.json"),
            now,
            None,
        )
        .await
        .unwrap();
        assert_eq!(out.evaluations.len(), 1);
    }
    assert_eq!(counter.get("kms.DescribeKey"), 2, "{:?}", counter.snapshot());
    assert_eq!(counter.get("sts.AssumeRole"), 1, "{:?}", counter.snapshot());
}
