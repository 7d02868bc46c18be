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
//!
//! Modules: `sweep` (the child), `estate` (plan and seeding), `emulators` (moto processes
//! and the latency proxy), `baseline`, `cold_start` (and artifacts), `figures` (limits,
//! report, table); this file holds the arguments and the parent's run.

mod baseline;
mod cold_start;
mod emulators;
mod estate;
mod figures;
mod material;
mod organization;
mod sweep;

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
    /// The organization: this many member accounts, the --resources spread over them, the
    /// --keys in the security account; measures the estate scan, the organization rules
    /// and the baseline in every account (see organization.rs). 0: one workload account.
    #[arg(long, default_value_t = 0)]
    accounts: usize,
    /// Child modes of --accounts: the estate scan, or the organization rules, over these accounts.
    #[arg(long, hide = true)]
    estate_scan_only: bool,
    #[arg(long, hide = true)]
    org_rules_only: bool,
    #[arg(long, hide = true, value_delimiter = ',')]
    member_accounts: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.sweep_only {
        return sweep_only(args.endpoint.as_deref(), args.rule.as_deref().unwrap());
    }
    if args.estate_scan_only {
        return organization::scan_only(args.member_accounts);
    }
    if args.org_rules_only {
        return organization::rules_only(args.member_accounts);
    }
    if args.accounts > 0 {
        return organization::run_organization(&args);
    }
    run(&args)
}

use baseline::*;
use cold_start::*;
use emulators::*;
use estate::*;
use figures::*;
use sweep::*;

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
