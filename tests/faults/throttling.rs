//! Throttling, 5xx, dropped connections and slow answers never become verdicts.

use super::*;

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
