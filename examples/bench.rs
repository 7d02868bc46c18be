//! Benchmark of the periodic sweep against moto, the Lambda cold start, the artifact
//! sizes, and a naive boto3 evaluator on the same estate. Run it through `scripts/bench`
//! (which installs moto and builds the release binaries first):
//!
//! ```sh
//! scripts/bench [--resources 10000] [--keys 100]
//! ```
//!
//! Modes of this one binary:
//! - default: start moto (one process per service group, see `groups`, routed by
//!   `AWS_ENDPOINT_URL_<SERVICE>`), seed the estate, run the three periodic sweeps (each in a child
//!   process of this binary, `--sweep-only`, so its peak RSS is the sweep's alone), run
//!   `scripts/bench_baseline.py` on the same estate, time 20 cold starts of `s3-rule`
//!   against a minimal Lambda Runtime API, measure the artifacts, print a table and write
//!   `target/bench/bench.json`.
//! - `--sweep-only --rule s3` (endpoints from the environment, or `--endpoint URL` for
//!   all): one rule's sweep exactly as the Lambda runs it
//!   (`Aws::from_env`, a current-thread runtime, `handler::handle` on the rule's
//!   `events/*-periodic.json`), printing one JSON object with call counts, wall time and
//!   `VmHWM` from /proc/self/status.
//!
//! Nothing here is part of `scripts/test`; the figures are reported, not asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification,
};
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::types::{OriginType, Tag};
use aws_sdk_s3::types::{
    CreateBucketConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::rule::{self, Rule};
use serde_json::{json, Value};

const REGION: &str = "eu-west-1";
/// moto's default account: the workload account.
const WORKLOAD: &str = "123456789012";
/// The security account holding the keys (reached by assuming a role, as in tests/common).
const SECURITY: &str = "111111111111";
/// `keyReaderRoleName` in events/*-periodic.json.
const READER_ROLE: &str = "kms-rotation-guard-key-reader";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Requests in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
/// PutEvaluations takes at most this many.
const BATCH: u64 = 100;
/// Default page sizes: DescribeDBInstances/Clusters MaxRecords, ListTables Limit.
const PAGE: u64 = 100;

#[derive(Parser, Debug)]
#[command(about = "kms-rotation-guard benchmark (see scripts/bench)")]
struct Args {
    /// Resources in the estate: 20% RDS instances, 40% DynamoDB tables, 40% S3 buckets.
    #[arg(long, default_value_t = 10_000)]
    resources: usize,
    /// Distinct KMS keys in the security account the resources use.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Lambda cold starts to time.
    #[arg(long, default_value_t = 20)]
    cold_starts: usize,
    /// Skip the Python baseline (development).
    #[arg(long)]
    no_baseline: bool,
    /// Put a TCP proxy adding this many milliseconds to every request between the
    /// evaluators (Rust sweep and baseline) and moto: models AWS round trips (0 = off).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// moto processes serving the estate, one per service group (see GROUPS): 4 =
    /// {kms, sts, config} {s3} {dynamodb} {rds}; 2 = {kms, sts, config} {s3, dynamodb, rds};
    /// 1 = one process for every service (the setup before per-service endpoints).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["1", "2", "4"]), |v| v.parse::<usize>().unwrap()))]
    moto_processes: usize,
    /// moto processes for each of the S3 and DynamoDB groups, each seeded with the same
    /// estate; the group's proxy spreads connections over them round robin, as a load
    /// balancer spreads them over an endpoint fleet (see REPLICABLE for why not the others).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// The old setup: one moto_server for every service (same as --moto-processes 1
    /// --replicas 1).
    #[arg(long)]
    single_moto: bool,
    /// Profiling aid: start moto, seed, print the endpoint variables, keep it up until
    /// stdin closes (then run e.g. `env $(…) valgrind --tool=massif bench --sweep-only --rule s3`).
    #[arg(long, conflicts_with = "sweep_only")]
    seed_only: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/bench.json"))]
    out: PathBuf,
    /// Child mode: only run one rule's periodic sweep and print JSON. The endpoints come
    /// from the environment (AWS_ENDPOINT_URL_<SERVICE>, as the parent sets them), or
    /// --endpoint for every service.
    #[arg(long, requires = "rule")]
    sweep_only: bool,
    #[arg(long)]
    endpoint: Option<String>,
    /// rds, dynamodb or s3 (with --sweep-only).
    #[arg(long)]
    rule: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.sweep_only {
        return sweep_only(args.endpoint.as_deref(), args.rule.as_deref().unwrap());
    }
    run(&args)
}

// ───────────────────────────── child: one sweep ─────────────────────────────

/// One rule's sweep, as the Lambda runs it: a current-thread runtime, `Aws::from_env`
/// (the parent sets AWS_ENDPOINT_URL_<SERVICE> and static credentials), `handler::handle`.
fn sweep_only(endpoint: Option<&str>, rule_name: &str) -> Result<()> {
    let rule = Rule::find(rule_name).with_context(|| format!("unknown rule {rule_name}"))?;
    if let Some(endpoint) = endpoint {
        std::env::set_var("AWS_ENDPOINT_URL", endpoint);
        for (_, var) in SERVICES {
            std::env::remove_var(var);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out = rt.block_on(async move {
        let counter = CallCounter::default();
        let aws = Aws::from_env().await.with_counter(counter.clone());
        let short = rule.name.strip_prefix("kms-rotation-").unwrap_or(rule.name);
        let payload: Value = serde_json::from_slice(
            &std::fs::read(Path::new(ROOT).join(format!("events/{short}-periodic.json"))).context("periodic event")?,
        )?;
        let hwm_before = status_kib("VmHWM");
        let cpu_before = self_cpu_seconds();
        let start = Instant::now();
        let outcome = kms_rotation_guard::handler::handle(&aws, rule, payload, chrono::Utc::now(), None)
            .await
            .map_err(|e| anyhow::anyhow!("{} sweep failed: {e}", rule.name))?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = self_cpu_seconds() - cpu_before;
        let mut compliance: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &outcome.evaluations {
            *compliance.entry(e.compliance.as_str()).or_default() += 1;
        }
        Ok::<_, anyhow::Error>(json!({
            "rule": rule.name,
            "evaluations": outcome.evaluations.len(),
            "compliance": compliance,
            "put_evaluation_calls": outcome.put_evaluation_calls,
            "calls": counter.snapshot(),
            "calls_total": counter.total(),
            "wall_s": wall,
            "cpu_s": cpu,
            "vmhwm_before_kib": hwm_before,
            "vmhwm_kib": status_kib("VmHWM"),
            // When each stage finished, from the start of the sweep (they overlap).
            "stages_s": outcome.stages.iter().map(|(name, t)| json!([name, t.as_secs_f64()])).collect::<Vec<_>>(),
        }))
    })?;
    println!("{out}");
    Ok(())
}

/// A field of /proc/self/status in KiB (VmHWM: peak resident set size).
fn status_kib(field: &str) -> u64 {
    proc_status_kib("self", field)
}

fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// utime + stime of a process (all its threads), in seconds (USER_HZ = 100 on Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn self_cpu_seconds() -> f64 {
    cpu_seconds("self")
}

// ───────────────────────────── parent: the whole run ─────────────────────────────

struct Plan {
    rds: usize,
    dynamodb: usize,
    s3: usize,
    keys: usize,
}

impl Plan {
    fn new(resources: usize, keys: usize) -> Plan {
        let rds = resources * 20 / 100;
        let dynamodb = resources * 40 / 100;
        Plan { rds, dynamodb, s3: resources - rds - dynamodb, keys }
    }
    /// Resource `global` (numbered across families: RDS, then DynamoDB, then S3) uses this key.
    fn key_of(&self, global: usize) -> usize {
        global % self.keys
    }
    fn alias(k: usize) -> String {
        format!("bench-key-{k:04}")
    }
    fn alias_arn(k: usize) -> String {
        format!("arn:aws:kms:{REGION}:{SECURITY}:alias/{}", Plan::alias(k))
    }
    /// Age of key k's LastRotationDate tag: spread over 0..500 days, so about a quarter of
    /// the keys are older than the 365-day limit.
    fn age_days(k: usize) -> i64 {
        ((k * 53 + 17) % 500) as i64
    }
    /// (rule, resources, distinct keys) per rule.
    fn per_rule(&self) -> Vec<(Rule, usize, usize)> {
        let distinct = |from: usize, n: usize| (from..from + n).map(|g| self.key_of(g)).collect::<BTreeSet<_>>().len();
        vec![
            (rule::RDS, self.rds, distinct(0, self.rds)),
            (rule::DYNAMODB, self.dynamodb, distinct(self.rds, self.dynamodb)),
            (rule::S3, self.s3, distinct(self.rds + self.dynamodb, self.s3)),
        ]
    }
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// The fewest calls a rule can make for `n` resources over `keys` distinct keys: the
/// enumeration the APIs require, one DescribeKey and one ListResourceTags per key, and
/// ⌈n/100⌉ PutEvaluations.
fn limit_for(rule: Rule, n: u64, keys: u64) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    match rule.name {
        "kms-rotation-rds" => {
            m.insert("rds.DescribeDBInstances", ceil_div(n, PAGE).max(1));
            m.insert("rds.DescribeDBClusters", 1);
        }
        "kms-rotation-dynamodb" => {
            m.insert("dynamodb.ListTables", ceil_div(n, PAGE).max(1));
            m.insert("dynamodb.DescribeTable", n);
        }
        _ => {
            m.insert("s3.ListBuckets", 1);
            m.insert("s3.GetBucketEncryption", n);
        }
    }
    m.insert("kms.DescribeKey", keys);
    m.insert("kms.ListResourceTags", keys);
    m.insert("config.PutEvaluations", ceil_div(n, BATCH));
    m
}

/// Calls the product makes by design beyond the limit: one AssumeRole of the key-reader
/// role per rule invocation, and ListKeyRotations per key (verifyTagAgainstKms).
const BY_DESIGN: &[&str] = &["sts.AssumeRole", "kms.ListKeyRotations"];

/// The services the sweeps and the baseline call, and the variable that routes each one
/// (`AWS_ENDPOINT_URL_` + the service ID in capitals, spaces as `_`; the Rust SDK and
/// boto3 read the same names).
const SERVICES: &[(&str, &str)] = &[
    ("kms", "AWS_ENDPOINT_URL_KMS"),
    ("sts", "AWS_ENDPOINT_URL_STS"),
    ("config", "AWS_ENDPOINT_URL_CONFIG_SERVICE"),
    ("s3", "AWS_ENDPOINT_URL_S3"),
    ("dynamodb", "AWS_ENDPOINT_URL_DYNAMODB"),
    ("rds", "AWS_ENDPOINT_URL_RDS"),
];

/// Which services share a moto process, for 1, 2 or 4 processes. KMS and STS always share
/// one: moto knows an assumed role's credentials only in the process that issued them, and
/// the key reader role crosses into the security account. The first group also serves
/// anything not listed (AWS_ENDPOINT_URL).
fn groups(processes: usize) -> &'static [&'static [&'static str]] {
    match processes {
        1 => &[&["kms", "sts", "config", "s3", "dynamodb", "rds"]],
        2 => &[&["kms", "sts", "config"], &["s3", "dynamodb", "rds"]],
        _ => &[&["kms", "sts", "config"], &["s3"], &["dynamodb"], &["rds"]],
    }
}

struct Moto {
    child: Child,
    endpoint: String,
    port: u16,
}

impl Moto {
    fn start(name: &str) -> Result<Moto> {
        let bin = Path::new(ROOT).join(".tools/venv/bin/moto_server");
        if !bin.exists() {
            bail!("{} is missing: run scripts/setup (scripts/bench does)", bin.display());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = out_dir().join(format!("moto-{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // moto keeps an automated snapshot per DB instance and stops creating
            // instances at 1,000 snapshots by default.
            .env("MOTO_RDS_SNAPSHOT_LIMIT", "1000000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start moto_server")?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = child.try_wait()? {
                bail!("moto_server exited early with {s} (see {})", log_path.display());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("moto_server did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Moto { child, endpoint: format!("http://127.0.0.1:{port}"), port })
    }
    fn pid(&self) -> String {
        self.child.id().to_string()
    }
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Services whose group may run as several replicas holding the same estate. Not KMS and
/// STS (an assumed role's credentials live only in the process that issued them), Config
/// (it goes with them), nor RDS: moto's DescribeDBInstances marker carries a checksum of
/// the request made with an object's identity hash, so one process refuses another's
/// marker ("InvalidToken: Input inconsistent with page token").
const REPLICABLE: &[&str] = &["s3", "dynamodb"];

/// The moto process(es) serving one group of services.
struct Group {
    /// e.g. "kms+sts+config".
    name: String,
    services: &'static [&'static str],
    /// One, or `--replicas` holding the same estate.
    motos: Vec<Moto>,
}

impl Group {
    fn process_name(&self, i: usize) -> String {
        if self.motos.len() == 1 {
            self.name.clone()
        } else {
            format!("{}#{}", self.name, i + 1)
        }
    }
}

/// The moto processes of one run and the URL each service is reached at.
struct Emulators {
    groups: Vec<Group>,
}

impl Emulators {
    fn start(processes: usize, replicas: usize) -> Result<Emulators> {
        let mut out = Vec::new();
        for services in groups(processes) {
            let name = services.join("+");
            let n = if services.iter().all(|s| REPLICABLE.contains(s)) { replicas.max(1) } else { 1 };
            let mut g = Group { name, services, motos: Vec::new() };
            for i in 0..n {
                let log = if n == 1 { g.name.clone() } else { format!("{}-{}", g.name, i + 1) };
                g.motos.push(Moto::start(&log)?);
            }
            out.push(g);
        }
        Ok(Emulators { groups: out })
    }
    /// One URL per group: the moto itself, or a proxy in front of its process(es) adding
    /// `latency` per request and spreading connections over the replicas.
    fn urls(&self, latency: Duration) -> Result<Vec<String>> {
        self.groups
            .iter()
            .map(|g| {
                if latency.is_zero() && g.motos.len() == 1 {
                    return Ok(g.motos[0].endpoint.clone());
                }
                let ports = g.motos.iter().map(|m| m.port).collect();
                Ok(format!("http://127.0.0.1:{}", latency_proxy(ports, latency)?))
            })
            .collect()
    }
    /// Replica `i` of each group, directly (seeding writes the estate into each replica).
    fn replica_endpoints(&self, i: usize) -> Endpoints {
        let urls: Vec<String> =
            self.groups.iter().map(|g| g.motos.get(i).unwrap_or(&g.motos[0]).endpoint.clone()).collect();
        self.endpoints(&urls)
    }
    /// The services that have an `i`-th replica (all of them for i = 0).
    fn services_of_replica(&self, i: usize) -> Vec<&'static str> {
        self.groups.iter().filter(|g| g.motos.len() > i).flat_map(|g| g.services.iter().copied()).collect()
    }
    fn replicas(&self) -> usize {
        self.groups.iter().map(|g| g.motos.len()).max().unwrap_or(1)
    }
    /// (service, url) for every service, given one URL per group (as from `urls`).
    fn endpoints(&self, urls: &[String]) -> Endpoints {
        let mut by_service = BTreeMap::new();
        for (g, url) in self.groups.iter().zip(urls) {
            for s in g.services {
                by_service.insert(*s, url.clone());
            }
        }
        Endpoints { default: urls[0].clone(), by_service }
    }
    /// CPU seconds each process has used so far, by process name.
    fn cpu(&self) -> BTreeMap<String, f64> {
        self.groups
            .iter()
            .flat_map(|g| g.motos.iter().enumerate().map(move |(i, m)| (g.process_name(i), m.cpu_seconds())))
            .collect()
    }
    fn describe(&self) -> Vec<Value> {
        self.groups
            .iter()
            .map(|g| json!({"name": g.name, "services": g.services, "processes": g.motos.len()}))
            .collect()
    }
}

/// Where the evaluators send each service's calls.
#[derive(Clone)]
struct Endpoints {
    /// AWS_ENDPOINT_URL: anything not routed by service (the KMS process).
    default: String,
    by_service: BTreeMap<&'static str, String>,
}

impl Endpoints {
    /// The standard endpoint variables, as both the Rust SDK and boto3 read them.
    fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("AWS_ENDPOINT_URL", self.default.clone())];
        for (service, var) in SERVICES {
            v.push((var, self.by_service[service].clone()));
        }
        v
    }
}

/// CPU used by each moto process between two `Emulators::cpu` readings.
fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Value {
    json!(after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0))).collect::<BTreeMap<_, _>>())
}

fn out_dir() -> PathBuf {
    let d = Path::new(ROOT).join("target/bench");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// The profile directory this binary was built into (target/release or target/debug).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().and_then(Path::parent).context("bench is not in target/<profile>/examples")?.to_path_buf())
}

fn aws_env(endpoints: &Endpoints) -> Vec<(&'static str, String)> {
    let mut v = endpoints.vars();
    v.extend([
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]);
    v
}

fn run(args: &Args) -> Result<()> {
    if args.keys == 0 || args.resources < 5 {
        bail!("need --keys ≥ 1 and --resources ≥ 5");
    }
    let profile = profile_dir()?;
    let profile_name = profile.file_name().unwrap().to_string_lossy().into_owned();
    let plan = Plan::new(args.resources, args.keys);
    eprintln!(
        "bench: {} resources ({} RDS instances, {} DynamoDB tables, {} S3 buckets) over {} keys; {} build",
        args.resources, plan.rds, plan.dynamodb, plan.s3, plan.keys, profile_name
    );

    // Cold starts and artifacts first: they need no emulator and are quick.
    let (cold, artifacts) = if args.seed_only {
        (Value::Null, Vec::new())
    } else {
        eprintln!("bench: timing {} cold starts of s3-rule", args.cold_starts);
        let mut cold = cold_starts(&profile.join("s3-rule"), args.cold_starts, &[])?;
        cold["ca_store"] = ca_store_choices(&profile.join("s3-rule"), args.cold_starts)?;
        (cold, artifacts(&profile)?)
    };

    let (processes, replicas) = if args.single_moto { (1, 1) } else { (args.moto_processes, args.replicas) };
    let emulators = Emulators::start(processes, replicas)?;
    for g in &emulators.groups {
        for (i, m) in g.motos.iter().enumerate() {
            eprintln!("bench: moto for {} at {} (pid {})", g.process_name(i), m.endpoint, m.pid());
        }
    }
    let seed_start = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(seed_keys(&emulators.replica_endpoints(0), &plan))?;
    for i in 0..emulators.replicas() {
        let services = emulators.services_of_replica(i);
        rt.block_on(seed_resources(&emulators.replica_endpoints(i), &plan, &services, emulators.replicas() > 1))?;
    }
    let seed_s = seed_start.elapsed().as_secs_f64();
    eprintln!("bench: seeded in {seed_s:.1} s");
    if args.seed_only {
        // Each group's moto (or a balancer without delay over its replicas).
        for (var, url) in emulators.endpoints(&emulators.urls(Duration::ZERO)?).vars() {
            println!("{var}={url}");
        }
        eprintln!("bench: moto stays up until stdin closes");
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        return Ok(());
    }

    // The evaluators reach each group's moto directly, or through one proxy per group adding
    // latency per request (and spreading connections over the group's replicas).
    let eval = emulators.endpoints(&emulators.urls(Duration::from_millis(args.latency_ms))?);
    if args.latency_ms > 0 {
        eprintln!("bench: evaluators go through proxies adding {} ms per request", args.latency_ms);
    }

    // The sweeps, one child process per rule (one Lambda per rule).
    let mut sweeps = Vec::new();
    for (rule, n, keys) in plan.per_rule() {
        eprintln!("bench: sweeping {} ({n} resources, {keys} keys)", rule.name);
        let moto_cpu = emulators.cpu();
        let out = Command::new(std::env::current_exe()?)
            .args(["--sweep-only", "--rule", rule.name])
            .envs(aws_env(&eval))
            .stderr(Stdio::inherit())
            .output()
            .context("spawn the sweep child")?;
        if !out.status.success() {
            bail!("the {} sweep failed ({})", rule.name, out.status);
        }
        let mut v: Value = serde_json::from_slice(&out.stdout).context("sweep child output")?;
        let by_process = cpu_delta(&moto_cpu, &emulators.cpu());
        v["moto_cpu_s"] = json!(by_process.as_object().unwrap().values().filter_map(Value::as_f64).sum::<f64>());
        v["moto_cpu_s_by_process"] = by_process;
        let limit = limit_for(rule, n as u64, keys as u64);
        v["resources"] = json!(n);
        v["distinct_keys"] = json!(keys);
        v["limit"] = json!(limit);
        v["limit_total"] = json!(limit.values().sum::<u64>());
        if v["evaluations"].as_u64() != Some(n as u64) {
            bail!("{}: {} evaluations for {n} resources", rule.name, v["evaluations"]);
        }
        sweeps.push(v);
    }

    let baseline = if args.no_baseline {
        None
    } else {
        eprintln!("bench: running the boto3 baseline (sequential; this is the slow part)");
        let moto_cpu = emulators.cpu();
        let mut b = baseline(&eval)?;
        let by_process = cpu_delta(&moto_cpu, &emulators.cpu());
        b["moto_cpu_s"] = json!(by_process.as_object().unwrap().values().filter_map(Value::as_f64).sum::<f64>());
        b["moto_cpu_s_by_process"] = by_process;
        Some(b)
    };
    let moto_processes = emulators.describe();
    drop(emulators);

    let report =
        report(args, &plan, &profile_name, seed_s, &moto_processes, &sweeps, baseline.as_ref(), &cold, &artifacts);
    std::fs::create_dir_all(args.out.parent().unwrap())?;
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    print_table(&report);
    println!("\nJSON: {}", args.out.display());
    Ok(())
}

// ───────────────────────────── seeding ─────────────────────────────

async fn sdk_config(endpoints: &Endpoints, creds: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&endpoints.default)
        .credentials_provider(creds)
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .timeout_config(kms_rotation_guard::aws::timeouts())
        .load()
        .await
}

/// An `Aws` with each service at its own moto, as the evaluators will reach it.
async fn routed(endpoints: &Endpoints, creds: Credentials) -> Aws {
    let aws = Aws::new(sdk_config(endpoints, creds).await);
    endpoints.by_service.iter().fold(aws, |aws, (service, url)| aws.with_service_endpoint(service, url.clone()))
}

/// Keys in the security account (through an assumed role, as tests/common `assumed`),
/// SEED_CONCURRENCY requests in flight.
async fn seed_keys(endpoints: &Endpoints, plan: &Plan) -> Result<()> {
    let base = routed(endpoints, Credentials::new("testing", "testing", None, None, "bench")).await;
    let assumed = base
        .sts()
        .assume_role()
        .role_arn(format!("arn:aws:iam::{SECURITY}:role/admin"))
        .role_session_name("bench-seed")
        .send()
        .await
        .context("assume role into the security account")?;
    let c = assumed.credentials().context("no credentials")?;
    let security = routed(
        endpoints,
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().into()), None, "bench"),
    )
    .await;
    let today = chrono::Utc::now();
    let security = &security;
    futures_util::stream::iter(0..plan.keys)
        .map(|k| async move {
            let date = (today - chrono::Duration::days(Plan::age_days(k))).format("%Y-%m-%d").to_string();
            let tag = Tag::builder().tag_key("LastRotationDate").tag_value(date).build()?;
            let id = security
                .kms()
                .create_key()
                .origin(OriginType::External)
                .description(format!("{} bench key", Plan::alias(k)))
                .tags(tag)
                .send()
                .await
                .context("create key")?
                .key_metadata()
                .context("no key metadata")?
                .key_id()
                .to_string();
            security
                .kms()
                .create_alias()
                .alias_name(format!("alias/{}", Plan::alias(k)))
                .target_key_id(id)
                .send()
                .await
                .context("create alias")?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The workload's resources (into one replica of each resource service), SEED_CONCURRENCY
/// requests in flight. They name their keys by alias ARN, so every replica holds the same.
///
/// With replicas, DynamoDB tables are created one at a time: moto lists tables in creation
/// order and pages ListTables by the last name returned, so every replica must hold them in
/// the same order for a page from one to continue at another.
async fn seed_resources(endpoints: &Endpoints, plan: &Plan, services: &[&str], replicated: bool) -> Result<()> {
    let base = routed(endpoints, Credentials::new("testing", "testing", None, None, "bench")).await;
    let wl = &base;
    let total = plan.rds + plan.dynamodb + plan.s3;
    let done = &AtomicUsize::new(0);
    let started = Instant::now();
    let tables = plan.rds..plan.rds + plan.dynamodb;
    // Only the families this replica set serves (RDS lives in one process).
    let wanted = |g: &usize| {
        let service = if *g < plan.rds {
            "rds"
        } else if tables.contains(g) {
            "dynamodb"
        } else {
            "s3"
        };
        services.contains(&service)
    };
    let todo = (0..total).filter(|g| wanted(g)).count();
    let create = |g: usize| async move {
        let key = Plan::alias_arn(plan.key_of(g));
        if g < plan.rds {
            wl.rds()
                .create_db_instance()
                .db_instance_identifier(format!("bench-db-{g:05}"))
                .db_instance_class("db.t3.micro")
                .engine("postgres")
                .master_username("admin")
                .master_user_password("password123!")
                .allocated_storage(20)
                .storage_encrypted(true)
                .kms_key_id(key)
                .send()
                .await
                .context("create db instance")?;
        } else if g < plan.rds + plan.dynamodb {
            let pk =
                || AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build();
            wl.dynamodb()
                .create_table()
                .table_name(format!("bench-table-{g:05}"))
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(pk()?)
                .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build()?)
                .sse_specification(
                    SseSpecification::builder().enabled(true).sse_type("KMS".into()).kms_master_key_id(key).build(),
                )
                .send()
                .await
                .context("create table")?;
        } else {
            let name = format!("bench-bucket-{g:05}");
            wl.s3()
                .create_bucket()
                .bucket(&name)
                .create_bucket_configuration(
                    CreateBucketConfiguration::builder().location_constraint(REGION.into()).build(),
                )
                .send()
                .await
                .context("create bucket")?;
            let default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key)
                .build()?;
            let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build();
            wl.s3()
                .put_bucket_encryption()
                .bucket(&name)
                .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
                .send()
                .await
                .context("put bucket encryption")?;
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1000) || n == todo {
            eprintln!("bench:   seeded {n}/{todo} resources ({:.0} s)", started.elapsed().as_secs_f64());
        }
        Ok::<_, anyhow::Error>(())
    };
    let others: Vec<usize> = (0..total).filter(|g| !tables.contains(g) && wanted(g)).collect();
    futures_util::stream::iter(others).map(create).buffer_unordered(SEED_CONCURRENCY).try_collect::<Vec<_>>().await?;
    let in_flight = if replicated { 1 } else { SEED_CONCURRENCY };
    let tables: Vec<usize> = tables.clone().filter(|g| wanted(g)).collect();
    futures_util::stream::iter(tables).map(create).buffer_unordered(in_flight).try_collect::<Vec<_>>().await?;
    Ok(())
}

// ───────────────────────────── latency proxy ─────────────────────────────

/// A TCP forwarder to 127.0.0.1:`upstreams` (each new connection to the next one, round
/// robin) that holds each request `delay` before passing it on (once per request/response
/// exchange on a keep-alive connection): a stand-in for the round trip to a real AWS
/// endpoint, which moto on loopback does not have.
fn latency_proxy(upstreams: Vec<u16>, delay: Duration) -> Result<u16> {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().flatten().enumerate() {
            let upstream = upstreams[n % upstreams.len()];
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let awaiting_request = Arc::new(AtomicBool::new(true));
                let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else { return };
                let flag = awaiting_request.clone();
                let upstream_half = std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if flag.swap(false, Ordering::SeqCst) && !delay.is_zero() {
                            std::thread::sleep(delay);
                        }
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from_server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    awaiting_request.store(true, Ordering::SeqCst);
                    if to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_client.shutdown(Shutdown::Both);
                let _ = upstream_half.join();
            });
        }
    });
    Ok(port)
}

// ───────────────────────────── baseline ─────────────────────────────

/// The boto3 baseline, reaching each service through the same endpoint variables (and
/// so the same moto processes and proxies) as the Rust sweeps.
fn baseline(endpoints: &Endpoints) -> Result<Value> {
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

// ───────────────────────────── cold start ─────────────────────────────

const NEXT: &str = "GET /2018-06-01/runtime/invocation/next";

/// Spawns the Lambda binary against a minimal Runtime API and times spawn → first
/// `GET …/invocation/next`. One discarded warm-up start (page cache), then `runs`.
fn cold_starts(bin: &Path, runs: usize, extra_env: &[(&str, String)]) -> Result<Value> {
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
fn ca_store_choices(bin: &Path, runs: usize) -> Result<Value> {
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

const ZIP_PY: &str = r#"
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with zipfile.ZipFile(dst, "w") as z, open(src, "rb") as f:
    z.writestr(info, f.read(), compresslevel=9)
"#;

/// Each Lambda binary and a Lambda zip of it (`bootstrap` inside, mode 0755).
fn artifacts(profile: &Path) -> Result<Vec<Value>> {
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

// ───────────────────────────── report ─────────────────────────────

fn mib(bytes: f64) -> f64 {
    bytes / 1024.0 / 1024.0
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    plan: &Plan,
    profile: &str,
    seed_s: f64,
    moto_processes: &[Value],
    sweeps: &[Value],
    baseline: Option<&Value>,
    cold: &Value,
    artifacts: &[Value],
) -> Value {
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut limit: BTreeMap<String, u64> = BTreeMap::new();
    for s in sweeps {
        for (op, n) in s["calls"].as_object().unwrap() {
            *calls.entry(op.clone()).or_default() += n.as_u64().unwrap();
        }
        for (op, n) in s["limit"].as_object().unwrap() {
            *limit.entry(op.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    let total: u64 = calls.values().sum();
    let limit_total: u64 = limit.values().sum();
    let by_design: u64 = BY_DESIGN.iter().map(|op| calls.get(*op).copied().unwrap_or(0)).sum();
    let wall: f64 = sweeps.iter().map(|s| s["wall_s"].as_f64().unwrap()).sum();
    let cpu: f64 = sweeps.iter().map(|s| s["cpu_s"].as_f64().unwrap()).sum();
    let moto_cpu: f64 = sweeps.iter().map(|s| s["moto_cpu_s"].as_f64().unwrap()).sum();
    let mut moto_cpu_by_process: BTreeMap<String, f64> = BTreeMap::new();
    for s in sweeps {
        for (p, t) in s["moto_cpu_s_by_process"].as_object().unwrap() {
            *moto_cpu_by_process.entry(p.clone()).or_default() += t.as_f64().unwrap();
        }
    }
    let evaluations: u64 = sweeps.iter().map(|s| s["evaluations"].as_u64().unwrap()).sum();
    let peak_kib = sweeps.iter().map(|s| s["vmhwm_kib"].as_u64().unwrap()).max().unwrap_or(0);
    let mut compliance: BTreeMap<String, u64> = BTreeMap::new();
    for s in sweeps {
        for (c, n) in s["compliance"].as_object().unwrap() {
            *compliance.entry(c.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    let ratio = total as f64 / limit_total as f64;
    let max_zip = artifacts.iter().map(|a| a["zip_bytes"].as_u64().unwrap()).max().unwrap_or(0);
    let cold_median = cold["median_ms"].as_f64().unwrap();
    let (speedup, calls_ratio, baseline_agrees) = match baseline {
        Some(b) => {
            let bw = b["wall_s"].as_f64().unwrap();
            let bc = b["calls_total"].as_u64().unwrap();
            let agrees = b["compliance"].as_object().map(|m| {
                m.iter().all(|(k, v)| compliance.get(k).copied() == v.as_u64()) && compliance.len() == m.len()
            });
            (Some(bw / wall), Some(bc as f64 / total as f64), agrees)
        }
        None => (None, None, None),
    };
    let target = |met: bool| if met { "met" } else { "MISSED" };
    json!({
        "machine": {
            "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "arch": std::env::consts::ARCH,
            "profile": profile,
            "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "moto_processes": moto_processes,
        },
        "estate": {
            "resources": args.resources, "keys": args.keys,
            "rds_instances": plan.rds, "dynamodb_tables": plan.dynamodb, "s3_buckets": plan.s3,
            "seed_s": seed_s, "seed_concurrency": SEED_CONCURRENCY,
            "added_latency_ms": args.latency_ms,
        },
        "sweep": {
            "per_rule": sweeps,
            "calls": calls,
            "calls_total": total,
            "limit": limit,
            "limit_total": limit_total,
            "by_design_extra": BY_DESIGN.iter().map(|op| (op.to_string(), calls.get(*op).copied().unwrap_or(0))).collect::<BTreeMap<_, _>>(),
            "by_design_extra_total": by_design,
            "calls_over_limit": ratio,
            "calls_over_limit_without_by_design": (total - by_design) as f64 / limit_total as f64,
            "wall_s": wall,
            "cpu_s": cpu,
            "moto_cpu_s": moto_cpu,
            "moto_cpu_s_by_process": moto_cpu_by_process,
            "evaluations": evaluations,
            "evaluations_per_s": evaluations as f64 / wall,
            "compliance": compliance,
            "peak_rss_kib": peak_kib,
        },
        "baseline": baseline,
        "comparison": {
            "rust_faster_x": speedup,
            "baseline_calls_over_rust_calls": calls_ratio,
            "verdict_tallies_agree": baseline_agrees,
        },
        "cold_start": cold,
        "artifacts": artifacts,
        "artifacts_note": format!("{} host builds ({}); scripts/build-lambdas builds arm64 with cargo-lambda when available", std::env::consts::ARCH, profile),
        "targets": {
            "calls_over_limit_le_1_05": target(ratio <= 1.05),
            "rust_ge_40x_faster_than_baseline": speedup.map(|s| target(s >= 40.0)),
            "cold_start_median_lt_15ms": target(cold_median < 15.0),
            "peak_rss_lt_32mib": target((peak_kib as f64) < 32.0 * 1024.0),
            "zip_lt_8mib": target((max_zip as f64) < 8.0 * 1024.0 * 1024.0),
        },
    })
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn print_table(r: &Value) {
    let s = &r["sweep"];
    let e = &r["estate"];
    let m = &r["machine"];
    let line = || println!("{}", "─".repeat(78));
    println!();
    line();
    println!(
        "kms-rotation-guard bench — {} resources ({} RDS / {} DynamoDB / {} S3) over {} keys",
        u(&e["resources"]),
        u(&e["rds_instances"]),
        u(&e["dynamodb_tables"]),
        u(&e["s3_buckets"]),
        u(&e["keys"])
    );
    println!(
        "machine: nproc {}, {}, {} build; load average at the end {}",
        u(&m["nproc"]),
        m["arch"].as_str().unwrap(),
        m["profile"].as_str().unwrap(),
        m["loadavg_at_end"].as_str().unwrap_or("?"),
    );
    let procs = m["moto_processes"].as_array().unwrap();
    let nprocs: u64 = procs.iter().map(|p| u(&p["processes"])).sum();
    println!(
        "moto 5.2.5 server, {} process{}: {}; seeded in {:.1} s ({} in flight); added latency {} ms",
        nprocs,
        if nprocs == 1 { "" } else { "es" },
        procs
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or("?").replace('+', ", ");
                match u(&p["processes"]) {
                    1 => format!("{{{name}}}"),
                    n => format!("{n}×{{{name}}}"),
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        e["seed_s"].as_f64().unwrap(),
        u(&e["seed_concurrency"]),
        u(&e["added_latency_ms"])
    );
    line();
    println!("{:<32} {:>10} {:>10} {:>10}", "periodic sweep calls", "calls", "limit", "extra");
    let calls = s["calls"].as_object().unwrap();
    let limit = s["limit"].as_object().unwrap();
    let ops: BTreeSet<&String> = calls.keys().chain(limit.keys()).collect();
    for op in ops {
        let c = calls.get(op.as_str()).and_then(Value::as_u64).unwrap_or(0);
        let l = limit.get(op.as_str()).and_then(Value::as_u64);
        let note = if BY_DESIGN.contains(&op.as_str()) { "by design" } else { "" };
        println!("  {:<30} {:>10} {:>10} {:>10}", op, c, l.map(|l| l.to_string()).unwrap_or_else(|| "-".into()), note);
    }
    println!(
        "  {:<30} {:>10} {:>10} {:>10}",
        "total",
        u(&s["calls_total"]),
        u(&s["limit_total"]),
        u(&s["by_design_extra_total"])
    );
    println!(
        "  calls / limit = {:.4} (incl. by-design AssumeRole + ListKeyRotations; {:.4} without)",
        s["calls_over_limit"].as_f64().unwrap(),
        s["calls_over_limit_without_by_design"].as_f64().unwrap()
    );
    line();
    println!(
        "{:<22} {:>6} {:>7} {:>9} {:>8} {:>8} {:>9} {:>10}",
        "rule", "n", "calls", "limit", "wall s", "cpu s", "moto cpu", "peak RSS"
    );
    for p in s["per_rule"].as_array().unwrap() {
        println!(
            "{:<22} {:>6} {:>7} {:>9} {:>8.2} {:>8.2} {:>9.2} {:>7.1} MiB",
            p["rule"].as_str().unwrap(),
            u(&p["evaluations"]),
            u(&p["calls_total"]),
            u(&p["limit_total"]),
            p["wall_s"].as_f64().unwrap(),
            p["cpu_s"].as_f64().unwrap(),
            p["moto_cpu_s"].as_f64().unwrap(),
            p["vmhwm_kib"].as_f64().unwrap() / 1024.0
        );
    }
    println!(
        "{:<22} {:>6} {:>7} {:>9} {:>8.2} {:>8.2} {:>9.2} {:>7.1} MiB (max)",
        "all three",
        u(&s["evaluations"]),
        u(&s["calls_total"]),
        u(&s["limit_total"]),
        s["wall_s"].as_f64().unwrap(),
        s["cpu_s"].as_f64().unwrap(),
        s["moto_cpu_s"].as_f64().unwrap(),
        s["peak_rss_kib"].as_f64().unwrap() / 1024.0
    );
    let by_process = |v: &Value| {
        v.as_object()
            .map(|o| {
                o.iter().map(|(p, t)| format!("{p} {:.2} s", t.as_f64().unwrap_or(0.0))).collect::<Vec<_>>().join(", ")
            })
            .unwrap_or_default()
    };
    println!("moto cpu by process during the sweeps: {}", by_process(&s["moto_cpu_s_by_process"]));
    for p in s["per_rule"].as_array().unwrap() {
        println!("  {:<20} {}", p["rule"].as_str().unwrap(), by_process(&p["moto_cpu_s_by_process"]));
    }
    println!("where the time goes (each stage's end, from the sweep's start; stages overlap):");
    for p in s["per_rule"].as_array().unwrap() {
        let stages: Vec<String> = p["stages_s"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|st| format!("{} {:.2} s", st[0].as_str().unwrap_or("?"), st[1].as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default();
        println!("  {:<20} {}", p["rule"].as_str().unwrap(), stages.join(", "));
    }
    println!(
        "  {:.0} evaluations/s; verdicts {}",
        s["evaluations_per_s"].as_f64().unwrap(),
        serde_json::to_string(&s["compliance"]).unwrap()
    );
    line();
    if let Some(b) = r["baseline"].as_object() {
        let c = &r["comparison"];
        println!(
            "boto3 baseline (sequential, per-resource DescribeKey + ListResourceTags): {:.2} s, {} calls, moto cpu {:.2} s",
            b["wall_s"].as_f64().unwrap(),
            u(&b["calls_total"]),
            b["moto_cpu_s"].as_f64().unwrap()
        );
        println!("  calls {}", serde_json::to_string(&b["calls"]).unwrap());
        println!("  moto cpu by process: {}", by_process(&b["moto_cpu_s_by_process"]));
        println!(
            "  Rust sweep faster by {:.1}x; baseline makes {:.2}x the calls; verdict tallies agree: {}",
            c["rust_faster_x"].as_f64().unwrap(),
            c["baseline_calls_over_rust_calls"].as_f64().unwrap(),
            c["verdict_tallies_agree"]
        );
        line();
    }
    let c = &r["cold_start"];
    println!(
        "cold start {} (spawn → first GET /runtime/invocation/next, {} runs): median {:.2} ms, p90 {:.2}, min {:.2}, max {:.2}; RSS at first poll {:.1} MiB",
        c["binary"].as_str().unwrap(),
        u(&c["runs"]),
        c["median_ms"].as_f64().unwrap(),
        c["p90_ms"].as_f64().unwrap(),
        c["min_ms"].as_f64().unwrap(),
        c["max_ms"].as_f64().unwrap(),
        c["rss_at_first_poll_kib_median"].as_f64().unwrap() / 1024.0
    );
    for choice in c["ca_store"].as_array().into_iter().flatten() {
        let median = choice["median_ms"].as_f64().or(c["median_ms"].as_f64()).unwrap_or(f64::NAN);
        println!("  CA store: {:<70} median {:.2} ms", choice["choice"].as_str().unwrap_or("?"), median);
    }
    line();
    println!("{:<24} {:>12} {:>12}   ({})", "artifact", "binary MiB", "zip MiB", r["artifacts_note"].as_str().unwrap());
    for a in r["artifacts"].as_array().unwrap() {
        println!(
            "{:<24} {:>12.2} {:>12.2}",
            a["name"].as_str().unwrap(),
            mib(a["binary_bytes"].as_f64().unwrap()),
            mib(a["zip_bytes"].as_f64().unwrap())
        );
    }
    line();
    println!("targets:");
    for (k, v) in r["targets"].as_object().unwrap() {
        println!("  {:<36} {}", k, v.as_str().unwrap_or("n/a (no baseline)"));
    }
    line();
}
