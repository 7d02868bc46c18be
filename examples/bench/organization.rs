//! `--accounts N`: the organization. N member accounts on moto, resources spread across them,
//! the keys in the security account. Measured, each in a child process of its own (its peak
//! RSS is its own):
//! - the estate scan (`estate::scan`, the `scan --accounts` path): one AssumeRole per
//!   account, the enumeration, one read set per key for the whole estate;
//! - the organization rules (`handler::handle_as` for every account × rule, as one warm
//!   Lambda process serves them: member credentials cached, keys' tags and rotations kept
//!   across invocations while DescribeKey names the same material, PutEvaluations in the
//!   member account);
//! - the seed-style baseline (scripts/bench_baseline.py) run in every account.
//!
//! moto knows an assumed role's credentials only in the process that issued them (the
//! kms+sts+config one), so the S3, DynamoDB and RDS processes would file a member's calls
//! under the default account. Both the Rust paths and the baseline therefore name the
//! account their credentials belong to in moto's `x-moto-account-id` header ([`MotoAccounts`]),
//! which AWS derives from the credentials themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use kms_rotation_guard::estate::{self, EstateSpec, MemberRole};
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::resource::ResourceType;

use super::*;

/// member-role.yaml's role name.
pub(crate) const MEMBER_ROLE: &str = "kms-rotation-guard-member";

/// The member accounts: 12-digit ids that sort in order.
pub(crate) fn member_accounts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{:012}", 200_000_000_000u64 + i as u64)).collect()
}

/// Resource `g` of the plan lives in this member account (round robin, so every account
/// holds every family and many keys).
pub(crate) fn account_of(g: usize, accounts: &[String]) -> &str {
    &accounts[g % accounts.len()]
}

/// Adds moto's `x-moto-account-id` header: a fixed account (seeding), or the account of the
/// credentials that signed the request, learnt from the AssumeRole answers this client saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct MotoAccounts {
    fixed: Option<String>,
    by_key: Arc<Mutex<HashMap<String, String>>>,
}

impl MotoAccounts {
    pub(crate) fn fixed(account: &str) -> MotoAccounts {
        MotoAccounts { fixed: Some(account.to_string()), ..MotoAccounts::default() }
    }
}

impl Intercept for MotoAccounts {
    fn name(&self) -> &'static str {
        "MotoAccounts"
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(out) = ctx.output_or_error() {
            if let Some(o) = out.downcast_ref::<aws_sdk_sts::operation::assume_role::AssumeRoleOutput>() {
                if let (Some(c), Some(user)) = (o.credentials(), o.assumed_role_user()) {
                    // arn:aws:sts::<account>:assumed-role/<role>/<session>
                    if let Some(account) = user.arn().split(':').nth(4) {
                        self.by_key.lock().unwrap().insert(c.access_key_id().to_string(), account.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request_mut();
        let account = self.fixed.clone().or_else(|| {
            let auth = req.headers().get("authorization")?;
            let key = auth.split("Credential=").nth(1)?.split('/').next()?;
            self.by_key.lock().unwrap().get(key).cloned()
        });
        if let Some(account) = account {
            req.headers_mut().insert("x-moto-account-id", account);
        }
        Ok(())
    }
}

/// The resources of `plan` into their member accounts (one replica of each resource
/// service), as `seed_resources` does for one account.
pub(crate) async fn seed_members(
    endpoints: &Endpoints,
    plan: &Plan,
    accounts: &[String],
    services: &[&str],
    replicated: bool,
) -> Result<()> {
    let mut by_account = BTreeMap::new();
    for a in accounts {
        let aws = routed(endpoints, Credentials::new("testing", "testing", None, None, "bench"))
            .await
            .with_interceptor(MotoAccounts::fixed(a));
        by_account.insert(a.clone(), aws);
    }
    seed_resources_with(plan, services, replicated, &|g| &by_account[account_of(g, accounts)]).await
}

/// The limit for the estate scan: per account (one Region), one AssumeRole and the
/// enumeration pages; per key, one DescribeKey and one ListResourceTags for the estate.
pub(crate) fn scan_limit(plan: &Plan, accounts: &[String]) -> BTreeMap<&'static str, u64> {
    let mut m: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for (i, _) in accounts.iter().enumerate() {
        let mine = |from: usize, n: usize| (from..from + n).filter(|g| g % accounts.len() == i).count() as u64;
        let (rds, ddb, s3) =
            (mine(0, plan.rds), mine(plan.rds, plan.dynamodb), mine(plan.rds + plan.dynamodb, plan.s3));
        *m.entry("sts.AssumeRole").or_default() += 1;
        *m.entry("rds.DescribeDBInstances").or_default() += ceil_div(rds, PAGE).max(1);
        *m.entry("rds.DescribeDBClusters").or_default() += 1;
        *m.entry("dynamodb.ListTables").or_default() += ceil_div(ddb, PAGE).max(1);
        *m.entry("dynamodb.DescribeTable").or_default() += ddb;
        *m.entry("s3.ListBuckets").or_default() += 1;
        *m.entry("s3.GetBucketEncryption").or_default() += s3;
    }
    for g in 0..plan.rds + plan.dynamodb + plan.s3 {
        keys.insert(plan.key_of(g));
    }
    m.insert("kms.DescribeKey", keys.len() as u64);
    m.insert("kms.ListResourceTags", keys.len() as u64);
    m
}

/// The limit for the organization rules: as for the scan (per account one AssumeRole and
/// the enumeration pages; per key one read set for the whole estate), plus ⌈n/100⌉
/// PutEvaluations per invocation (account × rule). A warm function keeps a key's tags and
/// rotations across invocations (`key::cache`) but calls DescribeKey in every one, so it
/// stays above the limit by one DescribeKey per invocation and key it uses.
pub(crate) fn rules_limit(plan: &Plan, accounts: &[String]) -> BTreeMap<&'static str, u64> {
    let mut m = scan_limit(plan, accounts);
    let ranges = [(0, plan.rds), (plan.rds, plan.dynamodb), (plan.rds + plan.dynamodb, plan.s3)];
    for (i, _) in accounts.iter().enumerate() {
        for (from, n) in ranges {
            let mine = (from..from + n).filter(|g| g % accounts.len() == i).count() as u64;
            *m.entry("config.PutEvaluations").or_default() += ceil_div(mine, BATCH);
        }
    }
    m
}

/// Child: the estate scan, printing one JSON object.
pub(crate) fn scan_only(accounts: Vec<String>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let out = rt.block_on(async move {
        let counter = CallCounter::default();
        let aws = Aws::from_env().await.with_counter(counter.clone()).with_interceptor(MotoAccounts::default());
        let params = RuleParams { key_reader_role_name: Some(READER_ROLE.into()), ..RuleParams::default() };
        let spec = EstateSpec {
            accounts,
            regions: vec![REGION.into()],
            member_role: Some(MemberRole::new(MEMBER_ROLE)?),
            // The scanner's credentials are moto's default account; keys are read through
            // the key-reader role in the security account, as an operator's would be.
            own_account: WORKLOAD.into(),
            resource_types: ResourceType::ALL.to_vec(),
            concurrency: estate::DEFAULT_CONCURRENCY,
        };
        let hwm_before = status_kib("VmHWM");
        let cpu_before = self_cpu_seconds();
        let start = Instant::now();
        let scan = estate::scan(&aws, &spec, &params, chrono::Utc::now(), &|_| {}).await?;
        let wall = start.elapsed().as_secs_f64();
        let mut compliance: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &scan.rows {
            *compliance.entry(r.compliance.as_str()).or_default() += 1;
        }
        let mut out = json!({
            "path": "estate scan",
            "rows": scan.rows.len(),
            "complete": scan.complete(),
            "not_scanned": scan.coverage.iter().filter(|c| c.status != estate::CoverageStatus::Scanned).count(),
            "keys": scan.keys.len(),
            "compliance": compliance,
        });
        out.as_object_mut().expect("an object").extend(cost(&counter, wall, cpu_before, hwm_before));
        Ok::<_, anyhow::Error>(out)
    })?;
    println!("{out}");
    Ok(())
}

/// What a child path cost: its calls by operation, wall and CPU time, peak RSS.
fn cost(counter: &CallCounter, wall: f64, cpu_before: f64, hwm_before: u64) -> serde_json::Map<String, Value> {
    let v = json!({
        "calls": counter.snapshot(),
        "calls_total": counter.total(),
        "wall_s": wall,
        "cpu_s": self_cpu_seconds() - cpu_before,
        "vmhwm_before_kib": hwm_before,
        "vmhwm_kib": status_kib("VmHWM"),
    });
    v.as_object().cloned().unwrap_or_default()
}

/// Child: every account × rule through `handler::handle_as`, as one warm Lambda process
/// (a current-thread runtime, like the Lambda binaries) serving eight invocations at a time.
pub(crate) fn rules_only(accounts: Vec<String>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out = rt.block_on(async move {
        let counter = CallCounter::default();
        // As lambda::run_rule: a warm function keeps keys' tags and rotations (key::cache).
        kms_rotation_guard::key::cache::enable_for_process(kms_rotation_guard::key::cache::DEFAULT_TTL);
        let aws = Aws::from_env()
            .await
            .with_counter(counter.clone())
            .with_interceptor(MotoAccounts::default())
            .with_interceptor(super::material::MaterialIds);
        let params = json!({"executionRoleName": MEMBER_ROLE, "keyReaderRoleName": READER_ROLE}).to_string();
        let hwm_before = status_kib("VmHWM");
        let cpu_before = self_cpu_seconds();
        let start = Instant::now();
        let invocations: Vec<(String, Rule)> =
            accounts.iter().flat_map(|a| rule::ALL.into_iter().map(move |r| (a.clone(), r))).collect();
        let aws = &aws;
        let params = &params;
        let outcomes: Vec<Result<(usize, usize)>> = futures_util::stream::iter(invocations)
            .map(|(account, rule)| async move {
                let invoking = json!({"awsAccountId": account, "notificationCreationTime": chrono::Utc::now().to_rfc3339(),
                    "messageType": "ScheduledNotification", "recordVersion": "1.0"});
                let payload = json!({"version": "1.0", "invokingEvent": invoking.to_string(), "ruleParameters": params,
                    "resultToken": "TESTMODE", "eventLeftScope": false, "accountId": account,
                    "configRuleName": format!("OrgConfigRule-{}-bench", rule.name)});
                let o = kms_rotation_guard::handler::handle_as(
                    aws,
                    rule,
                    payload,
                    chrono::Utc::now(),
                    None,
                    Some(MEMBER_ROLE),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{} in {account}: {e}", rule.name))?;
                let non = o.evaluations.iter().filter(|e| e.compliance.as_str() == "NON_COMPLIANT").count();
                Ok((o.evaluations.len(), non))
            })
            .buffer_unordered(estate::DEFAULT_CONCURRENCY)
            .collect()
            .await;
        let wall = start.elapsed().as_secs_f64();
        let mut evaluations = 0;
        let mut non_compliant = 0;
        for o in outcomes {
            let (e, n) = o?;
            evaluations += e;
            non_compliant += n;
        }
        let compliance: BTreeMap<&str, usize> =
            [("COMPLIANT", evaluations - non_compliant), ("NON_COMPLIANT", non_compliant)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect();
        let mut out = json!({
            "path": "organization rules",
            "evaluations": evaluations,
            "compliance": compliance,
        });
        out.as_object_mut().expect("an object").extend(cost(&counter, wall, cpu_before, hwm_before));
        Ok::<_, anyhow::Error>(out)
    })?;
    println!("{out}");
    Ok(())
}

/// The baseline in every member account (scripts/bench_baseline.py --member-accounts).
pub(crate) fn org_baseline(endpoints: &Endpoints, accounts: &[String]) -> Result<Value> {
    let python = Path::new(ROOT).join(".tools/venv/bin/python");
    let out = Command::new(python)
        .arg(Path::new(ROOT).join("scripts/bench_baseline.py"))
        .args(["--reader-role", READER_ROLE, "--member-role", MEMBER_ROLE])
        .args(["--member-accounts", &accounts.join(",")])
        .envs(aws_env(endpoints))
        .stderr(Stdio::inherit())
        .output()
        .context("run scripts/bench_baseline.py")?;
    if !out.status.success() {
        bail!("the baseline failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("baseline output")
}

/// The parent's run for `--accounts N`.
pub(crate) fn run_organization(args: &Args) -> Result<()> {
    let accounts = member_accounts(args.accounts);
    let plan = Plan::new(args.resources, args.keys);
    let profile = profile_dir()?;
    eprintln!(
        "bench: organization of {} member accounts, {} resources ({} RDS, {} DynamoDB, {} S3), {} keys in {SECURITY}",
        accounts.len(),
        args.resources,
        plan.rds,
        plan.dynamodb,
        plan.s3,
        plan.keys
    );
    let (processes, replicas) = if args.single_moto { (1, 1) } else { (args.moto_processes, args.replicas) };
    let emulators = Emulators::start(processes, replicas)?;
    let seed_start = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(seed_keys(&emulators.replica_endpoints(0), &plan))?;
    for i in 0..emulators.replicas() {
        let services = emulators.services_of_replica(i);
        rt.block_on(seed_members(
            &emulators.replica_endpoints(i),
            &plan,
            &accounts,
            &services,
            emulators.replicas() > 1,
        ))?;
    }
    let seed_s = seed_start.elapsed().as_secs_f64();
    eprintln!("bench: seeded in {seed_s:.1} s");
    let eval = emulators.endpoints(&emulators.urls(Duration::from_millis(args.latency_ms))?);

    let child = |mode: &str| -> Result<Value> {
        let moto_cpu = emulators.cpu();
        let out = Command::new(std::env::current_exe()?)
            .args([mode, "--member-accounts", &accounts.join(",")])
            .envs(aws_env(&eval))
            .stderr(Stdio::inherit())
            .output()
            .context("spawn the child")?;
        if !out.status.success() {
            bail!("{mode} failed ({})", out.status);
        }
        let mut v: Value = serde_json::from_slice(&out.stdout).context("child output")?;
        let by_process = cpu_delta(&moto_cpu, &emulators.cpu());
        v["moto_cpu_s"] = json!(by_process.as_object().unwrap().values().filter_map(Value::as_f64).sum::<f64>());
        Ok(v)
    };
    eprintln!("bench: estate scan of {} accounts", accounts.len());
    let mut scan = child("--estate-scan-only")?;
    let scan_limit = scan_limit(&plan, &accounts);
    scan["limit"] = json!(scan_limit);
    scan["limit_total"] = json!(scan_limit.values().sum::<u64>());
    eprintln!("bench: organization rules in {} accounts", accounts.len());
    let mut rules = child("--org-rules-only")?;
    let rules_limit = rules_limit(&plan, &accounts);
    rules["limit"] = json!(rules_limit);
    rules["limit_total"] = json!(rules_limit.values().sum::<u64>());
    let baseline = if args.no_baseline {
        None
    } else {
        eprintln!("bench: the boto3 baseline in every account (sequential; this is the slow part)");
        Some(org_baseline(&eval, &accounts)?)
    };
    drop(emulators);

    let ratio = |v: &Value| v["calls_total"].as_f64().unwrap() / v["limit_total"].as_f64().unwrap();
    let speedup = |v: &Value| baseline.as_ref().map(|b| b["wall_s"].as_f64().unwrap() / v["wall_s"].as_f64().unwrap());
    let mib = |v: &Value| v["vmhwm_kib"].as_f64().unwrap() / 1024.0;
    let agrees =
        baseline.as_ref().map(|b| b["compliance"] == scan["compliance"] && b["compliance"] == rules["compliance"]);
    let report = json!({
        "machine": {"nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                    "profile": profile.file_name().unwrap().to_string_lossy(),
                    "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()},
        "estate": {"accounts": accounts.len(), "resources": args.resources, "keys": args.keys,
                   "rds_instances": plan.rds, "dynamodb_tables": plan.dynamodb, "s3_buckets": plan.s3,
                   "seed_s": seed_s, "added_latency_ms": args.latency_ms, "moto_processes": processes, "replicas": replicas},
        "scan": scan, "rules": rules, "baseline": baseline,
        "figures": {
            "scan_calls_over_limit": ratio(&scan), "rules_calls_over_limit": ratio(&rules),
            "scan_speedup": speedup(&scan), "rules_speedup": speedup(&rules),
            "scan_peak_rss_mib": mib(&scan), "rules_peak_rss_mib": mib(&rules),
            "verdicts_agree_with_baseline": agrees,
        },
    });
    let out = args.out.with_file_name("bench-organization.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    let line = |name: &str, v: &Value, s: Option<f64>| {
        println!(
            "{name:<20} {:>9.2} s {:>8} calls  limit {:>8}  calls/limit {:>5.3}  peak RSS {:>6.1} MiB{}",
            v["wall_s"].as_f64().unwrap(),
            v["calls_total"],
            v["limit_total"],
            ratio(v),
            mib(v),
            s.map(|s| format!("  {s:.1}x the baseline")).unwrap_or_default()
        )
    };
    println!(
        "\norganization: {} accounts x {} resources, {} keys, {} ms added per call",
        accounts.len(),
        args.resources / accounts.len().max(1),
        args.keys,
        args.latency_ms
    );
    line("estate scan", &scan, speedup(&scan));
    line("organization rules", &rules, speedup(&rules));
    if let Some(b) = &baseline {
        println!("{:<20} {:>9.2} s {:>8} calls", "baseline (boto3)", b["wall_s"].as_f64().unwrap(), b["calls_total"]);
        println!("verdicts agree with the baseline: {}", agrees == Some(true));
    }
    println!("targets: calls/limit <= 1.05 (scan), >= 40x the baseline, peak RSS <= 64 MiB");
    println!("\nJSON: {}", out.display());
    Ok(())
}
