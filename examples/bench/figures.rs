//! The figures: the fewest calls a sweep can make, the report and the printed table.

use super::*;

pub(crate) fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// The fewest calls a rule can make for `n` resources over `keys` distinct keys: the
/// enumeration the APIs require, one DescribeKey and one ListResourceTags per key, and
/// ⌈n/100⌉ PutEvaluations.
pub(crate) fn limit_for(rule: Rule, n: u64, keys: u64) -> BTreeMap<&'static str, u64> {
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
pub(crate) const BY_DESIGN: &[&str] = &["sts.AssumeRole", "kms.ListKeyRotations"];

pub(crate) fn mib(bytes: f64) -> f64 {
    bytes / 1024.0 / 1024.0
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
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

pub(crate) fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub(crate) fn print_table(r: &Value) {
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
