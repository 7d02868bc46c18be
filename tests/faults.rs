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
//! Run with `--nocapture` to see the figures.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
        let dir = root().join("target/tmp");
        std::fs::create_dir_all(&dir).unwrap();
        let stats = dir.join(format!("fault-proxy-{}-{port}.json", std::process::id()));
        let _ = std::fs::remove_file(&stats);
        let mut child = Command::new(tool("venv", "mitmdump"))
            .args(["-q", "--mode", &format!("reverse:http://127.0.0.1:{target_port}")])
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
        FaultProxy { child, endpoint: format!("http://127.0.0.1:{port}"), stats }
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
        let _ = std::fs::remove_file(&self.stats);
    }
}

/// AWS's answers for one unreadable bucket, table and key, as the API references give them.
/// moto enforces none of these (no bucket policies, no DynamoDB resource policies, no custom
/// key stores), so the fault proxy sends them for the named resources only.
fn named_denials(bucket: &str, table: &str, key_id: &str) -> Value {
    serde_json::json!([
        {
            // S3 API reference, "Error responses": 403 AccessDenied, XML body.
            "match": [format!("/{bucket}"), "encryption"],
            "status": 403,
            "content_type": "application/xml",
            "body": "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>5E3B6A1F2C9D8E7A</RequestId><HostId>fault-proxy</HostId></Error>"
        },
        {
            // DynamoDB: 400 with the coral-namespaced AccessDeniedException type.
            "match": ["DynamoDB_20120810.DescribeTable", format!("\"{table}\"")],
            "status": 400,
            "content_type": "application/x-amz-json-1.0",
            "body": serde_json::json!({
                "__type": "com.amazon.coral.service#AccessDeniedException",
                "Message": format!("User: arn:aws:sts::{WORKLOAD}:assumed-role/evaluator/kms-rotation-guard is not authorized to perform: dynamodb:DescribeTable on resource: arn:aws:dynamodb:{REGION}:{WORKLOAD}:table/{table} with an explicit deny in a resource-based policy")
            }).to_string()
        },
        {
            // KMS: UnsupportedOperationException for a key in a custom key store.
            "match": ["TrentService.ListKeyRotations", key_id],
            "status": 400,
            "content_type": "application/x-amz-json-1.1",
            "error_type": "UnsupportedOperationException",
            "body": serde_json::json!({
                "__type": "UnsupportedOperationException",
                "message": format!("arn:aws:kms:{REGION}:{WORKLOAD}:key/{key_id} origin is AWS_CLOUDHSM which is not valid for this operation.")
            }).to_string()
        }
    ])
}

/// One bucket whose policy denies s3:GetEncryptionConfiguration, one table whose resource
/// policy denies dynamodb:DescribeTable, one key in a custom key store: each periodic sweep
/// completes, judges the other resources as before, and names each cause. Throttling of
/// the same resources still fails the invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_bucket_table_or_key_never_stops_a_sweep() {
    let moto = Moto::start();
    let today = ymd(Utc::now());
    let (wl, _) = workload(&moto.endpoint).await;
    let tag = [("LastRotationDate", today.as_str())];
    seed::key(&wl, "apps", OriginType::External, &tag).await;
    let hsm = seed::key(&wl, "hsm", OriginType::AwsCloudhsm, &tag).await;
    let arn = |alias| seed::alias_arn(WORKLOAD, alias);
    seed::bucket(&wl, "open-bucket", seed::Sse::Kms(Some(&arn("apps")))).await;
    seed::bucket(&wl, "locked-bucket", seed::Sse::Kms(Some(&arn("apps")))).await;
    seed::bucket(&wl, "hsm-bucket", seed::Sse::Kms(Some(&arn("hsm")))).await;
    seed::table(&wl, "open-table", Some(&arn("apps"))).await;
    seed::table(&wl, "locked-table", Some(&arn("apps"))).await;

    let port = moto.port;
    let proxy = FaultProxy::answering(port, &named_denials("locked-bucket", "locked-table", &hsm));
    let aws = Aws::new(sdk_config(&proxy.endpoint, static_creds()).await);
    let periodic = |file: &str| {
        let mut e = sample(file);
        e["ruleParameters"] = "{}".into();
        e
    };
    let verdicts = |out: handler::Outcome| -> BTreeMap<String, (String, String)> {
        out.evaluations
            .into_iter()
            .map(|e| (e.resource_id, (e.compliance.as_str().to_string(), e.annotation)))
            .collect()
    };
    let now = Utc::now();
    let s3 = verdicts(handler::handle(&aws, rule::S3, periodic("s3-periodic.json"), now, None).await.unwrap());
    let ddb =
        verdicts(handler::handle(&aws, rule::DYNAMODB, periodic("dynamodb-periodic.json"), now, None).await.unwrap());
    let check = |got: &BTreeMap<String, (String, String)>, id: &str, compliance: &str, words: &[&str]| {
        let (c, a) = got.get(id).unwrap_or_else(|| panic!("{id} not judged: {got:?}"));
        assert_eq!(c, compliance, "{id}: {a}");
        for w in words {
            assert!(a.contains(w), "{id}: {a:?} lacks {w:?}");
        }
    };
    assert_eq!(s3.len(), 3, "{s3:?}");
    check(&s3, "open-bucket", "COMPLIANT", &["alias/apps", "0 days ago"]);
    check(&s3, "locked-bucket", "NON_COMPLIANT", &["s3:GetEncryptionConfiguration denied"]);
    check(&s3, "hsm-bucket", "COMPLIANT", &["alias/hsm", "KMS cannot rotate it"]);
    assert_eq!(ddb.len(), 2, "{ddb:?}");
    check(&ddb, "open-table", "COMPLIANT", &["alias/apps"]);
    check(&ddb, "locked-table", "NON_COMPLIANT", &["dynamodb:DescribeTable denied"]);
    let answered = proxy.stats()["aws_errors"].clone();
    for i in ["0", "1", "2"] {
        assert!(answered[i].as_u64().unwrap_or(0) >= 1, "AWS error {i} was never sent: {answered}");
    }
    drop(proxy);

    // The same resources throttled: no verdict, the invocation fails and says why.
    let slow_down = serde_json::json!([
        {"match": ["/locked-bucket", "encryption"], "status": 503, "content_type": "application/xml",
         "body": "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"},
        {"match": ["DynamoDB_20120810.DescribeTable", "\"locked-table\""], "status": 400,
         "content_type": "application/x-amz-json-1.0",
         "body": "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\",\"message\":\"Rate exceeded\"}"}
    ]);
    let proxy = FaultProxy::answering(port, &slow_down);
    let (aws, _) = faulty_aws(&proxy.endpoint).await;
    for (rule, file) in [(rule::S3, "s3-periodic.json"), (rule::DYNAMODB, "dynamodb-periodic.json")] {
        let err = handler::handle(&aws, rule, periodic(file), now, None).await.unwrap_err();
        assert!(err.is_transient() && clear(&err), "{file}: {err}");
    }
}

/// Every sample event that reaches AWS through moto (the oversized one cannot: moto's
/// GetResourceConfigHistory times are not RFC 3339, see tests/evaluator.rs).
fn evaluated_events() -> Vec<(String, Rule)> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".json") && f != "s3-bucket-oversized.json")
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rule = match f.split('-').next().unwrap() {
                "rds" => rule::RDS,
                "dynamodb" => rule::DYNAMODB,
                "s3" => rule::S3,
                other => panic!("no rule for {other}"),
            };
            (f, rule)
        })
        .collect()
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

struct Baseline {
    evaluations: Vec<Evaluation>,
    calls: u64,
}

#[derive(Debug, Default)]
struct Tally {
    runs: usize,
    identical: usize,
    /// Identical, though the run needed more attempts than fault-free (it met faults).
    recovered: usize,
    failed_cleanly: usize,
    wrong: Vec<String>,
    unclear_errors: Vec<String>,
    attempts: u64,
    fault_free_attempts: u64,
    errors_by_operation: BTreeMap<String, usize>,
}

/// A clear failure: transient (so Config retries it) and naming the AWS call.
fn clear(e: &Error) -> bool {
    let text = e.to_string();
    let names_call = ["kms:", "sts:", "s3:", "rds:", "dynamodb:", "config:"].iter().any(|p| text.contains(p));
    e.is_transient() && names_call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_never_become_verdicts() {
    let started = Instant::now();
    let moto = Moto::start();
    let keys = seed::event_estate(&moto).await;
    let now: DateTime<Utc> = days_from_now(30);
    let events = evaluated_events();
    assert!(events.len() >= 15, "{events:?}");

    // Fault-free verdicts, straight to moto, with the same client setup.
    let mut baseline: BTreeMap<String, Baseline> = BTreeMap::new();
    for (file, rule) in &events {
        let (aws, counter) = faulty_aws(&moto.endpoint).await;
        let out = handler::handle(&aws, *rule, keys.event(file), now, None)
            .await
            .unwrap_or_else(|e| panic!("{file} fails without faults: {e}"));
        assert!(!out.evaluations.is_empty(), "{file}");
        baseline.insert(file.clone(), Baseline { evaluations: sorted(out.evaluations), calls: counter.total() });
    }
    let periodic: usize =
        baseline.iter().filter(|(f, _)| f.contains("periodic")).map(|(_, b)| b.evaluations.len()).sum();
    assert!(periodic >= 8, "the periodic sweeps should judge the whole estate: {periodic}");
    let baseline = Arc::new(baseline);

    // The same evaluations through 20% faults, six rounds. Periodic sweeps (the most
    // calls, and the partial-sweep risk) run twice per round.
    // FAULT_RATE, FAULT_SEED, FAULT_ROUNDS and FAULT_KINDS override the defaults for exploration.
    let env = |name: &str, default: f64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rate, fault_seed, rounds) =
        (env("FAULT_RATE", 0.2), env("FAULT_SEED", 20261123.0) as u64, env("FAULT_ROUNDS", 6.0) as usize);
    println!("fault rate {rate}, seed {fault_seed}, {rounds} rounds");
    let kinds = std::env::var("FAULT_KINDS").unwrap_or_else(|_| "throttle,http500,http503,drop,delay".into());
    let proxy = FaultProxy::start(moto.port, rate, fault_seed, &kinds);
    let mut plan: Vec<(String, Rule)> = Vec::new();
    for _ in 0..rounds {
        plan.extend(events.iter().cloned());
        plan.extend(events.iter().filter(|(f, _)| f.contains("periodic")).cloned());
    }
    let plan = Arc::new(std::sync::Mutex::new(plan.into_iter()));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (plan, tally, baseline, endpoint, keys) =
                (plan.clone(), tally.clone(), baseline.clone(), proxy.endpoint.clone(), keys.clone());
            tokio::spawn(async move {
                loop {
                    let Some((file, rule)) = plan.lock().unwrap().next() else { break };
                    let (aws, counter) = faulty_aws(&endpoint).await;
                    let result = handler::handle(&aws, rule, keys.event(&file), now, None).await;
                    let want = &baseline[&file];
                    let attempts = counter.total();
                    let mut t = tally.lock().unwrap();
                    t.runs += 1;
                    t.attempts += attempts;
                    t.fault_free_attempts += want.calls;
                    match result {
                        Ok(out) => {
                            let got = sorted(out.evaluations);
                            if got == want.evaluations {
                                t.identical += 1;
                                if attempts > want.calls {
                                    t.recovered += 1;
                                }
                            } else {
                                t.wrong.push(format!("{file}: got {got:#?}\nwant {:#?}", want.evaluations));
                            }
                        }
                        Err(e) => {
                            t.failed_cleanly += 1;
                            let op = match &e {
                                Error::Aws { operation, .. } => operation.to_string(),
                                other => format!("{other:?}").chars().take(40).collect(),
                            };
                            *t.errors_by_operation.entry(op).or_default() += 1;
                            if !clear(&e) {
                                t.unclear_errors.push(format!("{file}: {e}"));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let all = futures_util::future::join_all(workers);
    tokio::time::timeout(Duration::from_secs(150), all).await.expect("the fault runs took over 150 s");

    let stats = proxy.stats();
    let t = tally.lock().unwrap();
    println!("fault injection: {} runs in {:.1} s", t.runs, started.elapsed().as_secs_f64());
    println!("  proxy: {} requests, {} faults injected: {}", stats["requests"], stats["total_faults"], stats["faults"]);
    println!("  throttling by protocol: {}", stats["throttle_shapes"]);
    println!(
        "  attempts: {} (fault-free: {}), so ≥ {} retries",
        t.attempts,
        t.fault_free_attempts,
        t.attempts.saturating_sub(t.fault_free_attempts)
    );
    println!(
        "  outcomes: identical {} (of which {} met faults and recovered), failed cleanly {}, WRONG {}",
        t.identical,
        t.recovered,
        t.failed_cleanly,
        t.wrong.len()
    );
    println!("  failures by operation: {:?}", t.errors_by_operation);
    for e in t.unclear_errors.iter().take(5) {
        println!("  unclear error: {e}");
    }

    assert!(
        t.wrong.is_empty(),
        "{} runs gave a verdict other than the fault-free one:\n{}",
        t.wrong.len(),
        t.wrong.join("\n")
    );
    assert!(t.unclear_errors.is_empty(), "errors that are not clear: {:#?}", t.unclear_errors);
    assert_eq!(t.identical + t.failed_cleanly, t.runs);
    assert!(t.runs >= 18 * rounds, "{} runs", t.runs);
    assert!(stats["total_faults"].as_u64().unwrap_or(0) >= 20, "too few faults injected: {stats}");
    assert!(t.recovered > 0, "no run met a fault and still succeeded: the retries are not exercised");
    assert!(t.attempts > t.fault_free_attempts, "no retries at all");
}

// ---------------------------------------------------------------------------------------
// IAM denial
// ---------------------------------------------------------------------------------------

/// Actions a change evaluation of a same-account key needs (README, "IAM each handler
/// needs"), plus the sweep's for good measure.
const NEEDED: &[&str] = &[
    "config:PutEvaluations",
    "config:GetResourceConfigHistory",
    "config:GetComplianceDetailsByConfigRule",
    "kms:DescribeKey",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
    "kms:ListKeyRotations",
    "sts:AssumeRole",
    "dynamodb:ListTables",
    "dynamodb:DescribeTable",
];

/// Creates an IAM user allowed `NEEDED` minus `missing` (moto answers with Resource "*"
/// only: its KMS authorisation is not resource-scoped), with access keys; returns them.
/// boto3 comes with moto in .tools/venv, and the product has no IAM client.
fn iam_user(moto: &Moto, name: &str, missing: &str) -> Credentials {
    let actions: Vec<&str> = NEEDED.iter().copied().filter(|a| *a != missing).collect();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    });
    let script = r#"
import json, sys, boto3
endpoint, name, policy = sys.argv[1:4]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName=name)
iam.put_user_policy(UserName=name, PolicyName="evaluator", PolicyDocument=policy)
k = iam.create_access_key(UserName=name)["AccessKey"]
print(json.dumps({"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}))
"#;
    let out = Command::new(tool("venv", "python"))
        .args(["-c", script, &moto.endpoint, name, &policy.to_string()])
        .output()
        .expect("run python");
    assert!(out.status.success(), "creating {name}: {}", String::from_utf8_lossy(&out.stderr));
    let k: Value = serde_json::from_slice(&out.stdout).unwrap();
    Credentials::new(k["id"].as_str().unwrap(), k["secret"].as_str().unwrap(), None, None, "iam-user")
}

/// From here on moto authorises every request against IAM (`/moto-api/reset-auth`: the
/// number of requests still allowed without auth).
fn enforce_iam(moto: &Moto) {
    let out = Command::new("curl")
        .args(["-s", "-f", "-X", "POST", "-H", "Content-Type: text/plain", "--data", "0"])
        .arg(format!("{}/moto-api/reset-auth", moto.endpoint))
        .output()
        .expect("curl");
    assert!(out.status.success(), "reset-auth: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_key_read_is_never_compliant() {
    let started = Instant::now();
    let moto = Moto::start();
    let today = ymd(Utc::now());
    // Same-account keys: one imported (judged by its tag), one AWS_KMS without automatic
    // rotation (judged by the age of its material: created today). Both fresh, so only a
    // denial can fail them.
    let (wl, _) = workload(&moto.endpoint).await;
    let wl_ddb = seed::key(&wl, "workload-dynamodb", OriginType::External, &[("LastRotationDate", &today)]).await;
    let wl_kms = seed::key(&wl, "workload-kms", OriginType::AwsKms, &[("LastRotationDate", &today)]).await;
    let keys = seed::SampleKeys::of(&[("workload-dynamodb", &wl_ddb)]);
    let kms_arn = format!("arn:aws:kms:{REGION}:{WORKLOAD}:key/{wl_kms}");
    seed::table(&wl, "carts", Some(&keys.key_arn(WORKLOAD, "workload-dynamodb"))).await;
    seed::table(&wl, "orders", Some(&kms_arn)).await;

    let users: Vec<(&str, Credentials)> = ["kms:ListResourceTags", "kms:DescribeKey", "kms:ListKeyRotations", ""]
        .into_iter()
        .map(|missing| {
            let name = if missing.is_empty() {
                "evaluator-full".to_string()
            } else {
                format!("evaluator-no-{}", &missing[4..])
            };
            (missing, iam_user(&moto, &name, missing))
        })
        .collect();
    enforce_iam(&moto);

    let carts = keys.event("dynamodb-table-lowercase-fields.json");
    let orders = {
        let mut e = carts.clone();
        let mut inv: Value = serde_json::from_str(e["invokingEvent"].as_str().unwrap()).unwrap();
        let item = &mut inv["configurationItem"];
        item["resourceId"] = "orders".into();
        item["resourceName"] = "orders".into();
        let c = &mut item["configuration"];
        let sse =
            c.as_object_mut().unwrap().iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("ssedescription")).unwrap().1;
        let arn =
            sse.as_object_mut().unwrap().iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("kmsmasterkeyarn")).unwrap().1;
        *arn = kms_arn.clone().into();
        e["invokingEvent"] = inv.to_string().into();
        e
    };
    let mut combos = Vec::new();
    for allow in [false, true] {
        for verify in [true, false] {
            for max in ["365", "36500"] {
                for expiry in ["30", "0"] {
                    for role in ["kms-rotation-guard-key-reader", ""] {
                        combos.push(serde_json::json!({
                            "allowAwsManagedKeys": allow.to_string(),
                            "verifyTagAgainstKms": verify.to_string(),
                            "maxKeyAgeDays": max,
                            "expiryWarningDays": expiry,
                            "keyReaderRoleName": role,
                        }));
                    }
                }
            }
        }
    }

    let mut runs = 0;
    for (missing, creds) in &users {
        let aws = Aws::new(sdk_config(&moto.endpoint, creds.clone()).await);
        for (what, event) in [("carts (EXTERNAL key)", &carts), ("orders (AWS_KMS key, no auto-rotation)", &orders)] {
            for params in &combos {
                let mut payload = event.clone();
                payload["ruleParameters"] = params.to_string().into();
                let out = handler::handle(&aws, rule::DYNAMODB, payload, Utc::now(), None)
                    .await
                    .unwrap_or_else(|e| panic!("{what} without {missing:?}, {params}: {e}"));
                runs += 1;
                assert_eq!(out.evaluations.len(), 1);
                let e = &out.evaluations[0];
                let verify = params["verifyTagAgainstKms"] == "true";
                let aws_kms = what.starts_with("orders");
                match *missing {
                    // The control: with every permission the fresh tag is COMPLIANT, so
                    // the NON_COMPLIANT below is the denial's doing.
                    "" => assert_eq!(e.compliance, Compliance::Compliant, "{what} {params}: {e:?}"),
                    // Without the rotation history, verifyTagAgainstKms=false is the
                    // documented way out ("or set verifyTagAgainstKms=false").
                    // ... but not for an AWS_KMS key: its material's age comes only from
                    // the rotation history, whatever the tag says.
                    "kms:ListKeyRotations" if !verify && !aws_kms => {
                        assert_eq!(e.compliance, Compliance::Compliant, "{what} {params}: {e:?}")
                    }
                    // An AWS_KMS key is judged by KMS's own dates; its tags are not needed.
                    "kms:ListResourceTags" if aws_kms => {
                        assert_eq!(e.compliance, Compliance::Compliant, "{what} {params}: {e:?}")
                    }
                    action => {
                        assert_eq!(e.compliance, Compliance::NonCompliant, "{what} without {action}, {params}: {e:?}");
                        assert!(
                            e.annotation.contains(action) && e.annotation.contains("denied"),
                            "{what} without {action}, {params}: {:?}",
                            e.annotation
                        );
                    }
                }
            }
        }
        println!("{:<24} → e.g. {:?}", if missing.is_empty() { "(all allowed)" } else { missing }, {
            let mut payload = carts.clone();
            payload["ruleParameters"] = combos[0].to_string().into();
            handler::handle(&aws, rule::DYNAMODB, payload, Utc::now(), None).await.unwrap().evaluations[0]
                .annotation
                .clone()
        });
    }
    println!(
        "IAM denial: {runs} evaluations over {} parameter combinations in {:.1} s",
        combos.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Regression, once a bug: a 404 or 403 without an AWS error code is read as a finding
// ---------------------------------------------------------------------------------------

/// Regression test, once a bug (src/aws.rs, `classify`: `(c.is_empty() && status == Some(403))` → Denied and
/// `(c.is_empty() && status == Some(404))` → NotFound). A 403/404 whose body names no AWS
/// error (an HTML page from an intermediary, an empty body) becomes a finding, not a
/// failed invocation:
///
/// - a bare 404 on kms:DescribeKey turns a COMPLIANT key into NON_COMPLIANT "KMS key …
///   not found" (src/key/lookup.rs `describe`);
/// - a bare 403 on kms:ListResourceTags turns it into NON_COMPLIANT "… denied";
/// - a bare 404 on dynamodb:DescribeTable during a sweep drops the table from the sweep
///   (src/resource/dynamodb.rs `enumerate`), which is then reported as complete (and,
///   outside TestMode, the table's earlier result would be retired as "resource no
///   longer exists"); with every DescribeTable answered so, the sweep reports nothing at
///   all, successfully. (S3's SDK names a codeless 404 "NotFound", which is not in
///   `NOT_FOUND`, so the S3 sweep fails cleanly: the last case is a control.)
///
/// AWS itself always names the error (`__type` / `<Code>`), so this needs a broken
/// intermediary; the fallback exists for moto's XML-bodied IAM 403s on JSON services.
/// Expected: a codeless 403/404 fails the invocation (transient or "other") unless the
/// body is recognisably the emulator's denial. Run with
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codeless_403_and_404_never_become_verdicts() {
    let moto = Moto::start();
    let keys = seed::event_estate(&moto).await;
    let now = days_from_now(30);
    let mut wrong = Vec::new();
    for (kind, matching, file, rule) in [
        ("bare404", "TrentService.DescribeKey", "dynamodb-table-lowercase-fields.json", rule::DYNAMODB),
        ("bare403", "TrentService.ListResourceTags", "dynamodb-table-lowercase-fields.json", rule::DYNAMODB),
        ("bare404", "DynamoDB_20120810.DescribeTable", "dynamodb-periodic.json", rule::DYNAMODB),
        ("bare404", "encryption", "s3-periodic.json", rule::S3),
    ] {
        let (aws, _) = faulty_aws(&moto.endpoint).await;
        let want = sorted(handler::handle(&aws, rule, keys.event(file), now, None).await.unwrap().evaluations);
        let proxy = FaultProxy::start_matching(moto.port, 1.0, 1, kind, matching);
        let (aws, _) = faulty_aws(&proxy.endpoint).await;
        match handler::handle(&aws, rule, keys.event(file), now, None).await {
            Err(e) => println!("{kind} on {matching}, {file}: failed cleanly: {e}"),
            Ok(out) => {
                let got = sorted(out.evaluations);
                if got != want {
                    let show = |e: &[Evaluation]| {
                        e.iter()
                            .map(|e| format!("{} {} {}", e.resource_id, e.compliance.as_str(), e.annotation))
                            .collect::<Vec<_>>()
                    };
                    wrong.push(format!(
                        "{kind} on {matching}, {file}:\n  fault-free: {:#?}\n  with fault: {:#?}",
                        show(&want),
                        show(&got)
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "codeless 403/404 answers became verdicts:\n{}", wrong.join("\n"));
}
