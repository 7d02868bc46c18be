//! `scan`: the auditor's report over a seeded moto estate, and its exit status as a gate.

mod common;

use std::process::Command;

use aws_sdk_kms::types::OriginType;
use common::seed::{self, Sse};
use common::*;
use serde_json::Value;

fn scan(moto_env: &[(&'static str, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
        .arg("scan")
        .args(args)
        .envs(moto_env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_lists_every_resource_and_gates_on_compliance() {
    let moto = Moto::start();
    let (wl, _) = workload(&moto.endpoint).await;
    let today = ymd(chrono::Utc::now());
    seed::key(&wl, "fresh", OriginType::External, &[("LastRotationDate", &today)]).await;
    seed::key(&wl, "stale", OriginType::External, &[("LastRotationDate", &ymd(days_from_now(-500)))]).await;
    let arn = |a: &str| format!("arn:aws:kms:{REGION}:{WORKLOAD}:alias/{a}");
    seed::table(&wl, "orders", Some(&arn("fresh"))).await;
    seed::bucket(&wl, "invoices", Sse::Kms(Some("alias/fresh"))).await;
    seed::rds_instance(&wl, "ledger", Some(&arn("fresh"))).await;
    let env = moto.env();

    // All compliant: exit 0, every field present.
    let now = days_from_now(10).to_rfc3339();
    let (code, stdout, stderr) = scan(&env, &["--format", "json", "--now", &now]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.len(), 3, "{stdout}");
    for r in &rows {
        for f in [
            "account",
            "resourceType",
            "resourceId",
            "keyReference",
            "keyArn",
            "keyAlias",
            "origin",
            "rotationDate",
            "keyAgeDays",
            "compliance",
            "annotation",
        ] {
            assert!(!r[f].is_null(), "{f} missing in {r}");
        }
        assert_eq!(r["keyAgeDays"], 10);
        assert_eq!(r["origin"], "EXTERNAL");
        assert!(r["keyArn"].as_str().unwrap().contains(":key/"));
    }

    // One stale key: exit 1, and the CSV names it.
    seed::table(&wl, "archive", Some(&arn("stale"))).await;
    let (code, stdout, _) = scan(&env, &["--format", "csv", "--now", &now]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains("archive") && l.contains("NON_COMPLIANT") && l.contains("limit 365 days")),
        "{stdout}"
    );
    // Filter by type.
    let (code, stdout, _) = scan(&env, &["--format", "json", "--resource-types", "AWS::S3::Bucket", "--now", &now]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&stdout).unwrap().len(), 1);

    // Errors: exit 2, one clear line, no panic.
    let (code, _, stderr) = scan(&env, &["--max-key-age-days", "0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("maxKeyAgeDays") && !stderr.contains("panicked"), "{stderr}");
    let dead: Vec<_> = env
        .iter()
        .map(|(k, v)| {
            (*k, if *k == "AWS_ENDPOINT_URL" { format!("http://127.0.0.1:{}", free_port()) } else { v.clone() })
        })
        .collect();
    let (code, _, stderr) = scan(&dead, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
}
