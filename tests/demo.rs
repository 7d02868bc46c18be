//! The README's first command, run non-interactively: the JSON report says what a person
//! sees in the tables, and nothing is left running.

mod common;

use std::process::Command;

use common::root;
use serde_json::Value;

fn verdicts(rows: &Value) -> Vec<(String, String)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["resourceName"].as_str().unwrap().to_string(), r["compliance"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn demo_evaluates_rotates_and_re_evaluates() {
    let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
        .args(["demo", "--json", "--tools"])
        .arg(root().join(".tools"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    // Clean output (issue 14): no colour codes when stderr is not a terminal, no log
    // warnings between the steps, and the emulator's gap said once, in plain words.
    assert!(!stderr.contains('\x1b'), "ANSI escapes on a non-terminal stderr:\n{stderr}");
    assert!(!stderr.contains("WARN"), "log warnings in the demo's output:\n{stderr}");
    assert_eq!(stderr.matches("ListKeyRotations").count(), 1, "{stderr}");

    let before = verdicts(&report["before"]);
    let after = verdicts(&report["after"]);
    // dev, int and prod: four resources each on their own keys, three more in dev.
    assert_eq!(before.len(), 15, "{before:?}");
    let non_compliant = |v: &[(String, String)]| {
        let mut n: Vec<String> = v.iter().filter(|(_, c)| c == "NON_COMPLIANT").map(|(n, _)| n.clone()).collect();
        n.sort();
        n
    };
    // Stale, missing, and lying tags, plus the three resources rotation cannot fix.
    assert_eq!(
        non_compliant(&before),
        [
            "dev-audit-trail",
            "dev-invoices-222222222222",
            "dev-ledger",
            "dev-orders",
            "dev-scratch-222222222222",
            "dev-static-assets-222222222222",
            "prod-invoices-333333333333",
            "prod-sessions"
        ]
    );
    let annotations: Vec<&str> =
        report["before"].as_array().unwrap().iter().map(|r| r["annotation"].as_str().unwrap()).collect();
    for fragment in
        ["limit 365 days", "has no LastRotationDate tag", "LastRotationKeyMaterialId says", "AWS-owned key", "SSE-S3"]
    {
        assert!(annotations.iter().any(|a| a.contains(fragment)), "no annotation mentions {fragment:?}");
    }
    // Four distinct keys rotated (dev-rds serves two resources), in place, verified.
    let rotations = report["rotations"].as_array().unwrap();
    assert_eq!(rotations.len(), 4, "{rotations:?}");
    assert!(rotations.iter().all(|r| r["strategy"] == "in-place" && r["keyMaterialId"].is_string()));
    // Afterwards only what rotation cannot fix remains.
    assert_eq!(
        non_compliant(&after),
        ["dev-audit-trail", "dev-scratch-222222222222", "dev-static-assets-222222222222"]
    );
    assert!(report["seconds"].as_f64().unwrap() < 120.0);
    // The runbook's part (issue 22): the inventory lists every key, and the campaign rotates
    // its three due keys in waves dev -> int -> prod under its change id, the soak quiet.
    let runbook = &report["runbook"];
    assert!(runbook["inventory"]["keys"].as_array().unwrap().len() >= 9, "{runbook}");
    let waves: Vec<(String, Vec<String>)> = runbook["campaign"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let outcomes = w["keys"].as_array().unwrap().iter().map(|k| k["outcome"].as_str().unwrap().to_string());
            (w["name"].as_str().unwrap().to_string(), outcomes.collect())
        })
        .collect();
    let rotated = vec!["rotated".to_string()];
    assert_eq!(waves, vec![("dev".into(), rotated.clone()), ("int".into(), rotated.clone()), ("prod".into(), rotated)]);
    assert!(runbook["campaign"]["stopped"].is_null(), "{runbook}");
    assert_eq!(runbook["campaign"]["waves"][0]["keys"][0]["record"]["changeId"], "CHG-DEMO-1");
    // Custody: the demo imported every key's material from SoftHSM (and rotated four of
    // them there), so the HSM holds the current material of all nine keys, before and after.
    for stage in ["before", "after"] {
        let rows = report[stage].as_array().unwrap();
        let mut held = std::collections::BTreeSet::new();
        for r in rows {
            match r["origin"].as_str() {
                Some("EXTERNAL") => {
                    assert_eq!(r["hsmHoldsMaterial"], true, "{stage}: {r}");
                    held.insert(r["keyArn"].as_str().unwrap());
                }
                _ => assert!(r["hsmHoldsMaterial"].is_null(), "{stage}: {r}"),
            }
        }
        assert_eq!(held.len(), 9, "{stage}: {held:?}");
    }

    // The auditor's reports before and after rotation: the organization report (one page for
    // dev, int and prod), each with the SHA-256 of the estate export written next to it
    // (sha256sum, an independent implementation).
    let reports: Vec<std::path::PathBuf> =
        report["reports"].as_array().unwrap().iter().map(|p| root().join(p.as_str().unwrap())).collect();
    let names: Vec<String> = reports.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
    assert_eq!(names, ["before.html", "before.json", "after.html", "after.json"]);
    assert!(reports.iter().all(|p| p.starts_with(root().join("target/demo"))), "{reports:?}");
    for (html, json, rows) in
        [(&reports[0], &reports[1], &report["before"]), (&reports[2], &reports[3], &report["after"])]
    {
        let page = std::fs::read_to_string(html).unwrap();
        let sum = Command::new("sha256sum").arg(json).output().unwrap();
        let digest = String::from_utf8(sum.stdout).unwrap().split_whitespace().next().unwrap().to_string();
        assert!(page.contains(&format!("id=\"payload-sha256\">{digest}<")), "{} lacks {digest}", html.display());
        let export: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        assert_eq!(export["kind"], "kms-rotation-guard/estate-scan");
        assert_eq!(&export["rows"], rows);
        assert_eq!(export["accounts"], serde_json::json!(["222222222222", "444444444444", "333333333333"]));
        assert_eq!(page.matches(r#"<span class="custody ok">held</span>"#).count(), 9, "{}", html.display());
        assert_eq!(page.matches(r#"<details class="account""#).count(), 3, "a section per account");
        for (name, verdict) in verdicts(rows) {
            assert!(page.contains(&format!("data-verdict=\"{verdict}\" data-resource=\"{name}\"")), "{name} {verdict}");
        }
    }

    // Nothing left behind: every emulator it started refuses connections now.
    let endpoints = report["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 4, "a moto per account and LocalStack");
    for e in endpoints {
        let addr = e.as_str().unwrap().trim_start_matches("http://");
        assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still answers after the demo");
    }
}
