//! A fuzz target over the full handler entry, on stable Rust (cargo-fuzz needs nightly):
//! random JSON and mutated sample events go through `handler::handle` for every rule with
//! AWS unreachable, so parsing, extraction, parameters and the error paths all run. A
//! panic fails the test and saves the input under tests/fuzz-regressions/, which every run
//! replays first.
//!
//! FUZZ_SECONDS sets the budget (default 5 s in the test suite):
//!   FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture

mod common;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use common::json::arb_json;
use common::*;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::{handler, rule};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};

fn samples() -> Vec<Value> {
    let mut v: Vec<Value> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    v.sort_by_key(|e| e.to_string());
    v
}

/// Every object path in a value, with the invoking event's inner JSON expanded.
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let mut p = prefix.clone();
            p.push(k.clone());
            out.push(p.clone());
            paths(child, p, out);
        }
    }
}

/// A sample event with one field replaced (or removed) somewhere, even inside the
/// invokingEvent string or the S3 supplementary configuration string.
fn mutated(samples: Vec<Value>) -> impl Strategy<Value = Value> {
    (prop::sample::select(samples), any::<prop::sample::Index>(), proptest::option::of(arb_json()), any::<bool>())
        .prop_map(|(mut event, which, replacement, inner)| {
            let mut invoking: Value =
                serde_json::from_str(event["invokingEvent"].as_str().unwrap_or("{}")).unwrap_or(json!({}));
            let target = if inner { &mut invoking } else { &mut event };
            let mut all = Vec::new();
            paths(target, vec![], &mut all);
            if !all.is_empty() {
                let path = &all[which.index(all.len())];
                let mut node = &mut *target;
                for k in &path[..path.len() - 1] {
                    node = node.get_mut(k).unwrap();
                }
                let obj = node.as_object_mut().unwrap();
                match replacement {
                    Some(r) => obj.insert(path[path.len() - 1].clone(), r),
                    None => obj.remove(&path[path.len() - 1]),
                };
            }
            if inner {
                event["invokingEvent"] = Value::String(invoking.to_string());
            }
            event
        })
}

async fn unreachable_aws() -> Aws {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(dead)
        .credentials_provider(static_creds())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    Aws::new(config)
}

/// Runs one input through every rule; a panic is reported with the input saved.
fn exercise(rt: &tokio::runtime::Runtime, aws: &Aws, input: &Value) {
    for r in rule::ALL {
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let _ = handler::handle(aws, r, input.clone(), chrono::Utc::now(), None).await;
            })
        }));
        if run.is_err() {
            let text = serde_json::to_string_pretty(input).unwrap();
            let name = format!(
                "{:016x}.json",
                text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
            );
            let path = root().join("tests/fuzz-regressions").join(name);
            std::fs::write(&path, text).unwrap();
            panic!("handler panicked on an input saved as {}", path.display());
        }
    }
}

#[test]
fn the_handler_never_panics_on_arbitrary_events() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let aws = rt.block_on(unreachable_aws());
    // Regressions first.
    let mut replayed = 0;
    for e in std::fs::read_dir(root().join("tests/fuzz-regressions")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            exercise(&rt, &aws, &serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
            replayed += 1;
        }
    }
    let budget = Duration::from_secs(std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as u64);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let strategy = prop_oneof![mutated(samples()), arb_json()];
    let started = Instant::now();
    let mut executions = 0u64;
    while started.elapsed() < budget {
        let input = strategy.new_tree(&mut runner).unwrap().current();
        exercise(&rt, &aws, &input);
        executions += 1;
    }
    println!(
        "fuzz: seed {seed}, {executions} inputs x {} rules in {:.0} s ({:.0} inputs/s), {replayed} regressions replayed, 0 panics",
        rule::ALL.len(),
        started.elapsed().as_secs_f64(),
        executions as f64 / started.elapsed().as_secs_f64()
    );
    assert!(executions > 0);
}
