//! The runbook's commands as a person runs them: the exit-status table, JSON on stdout,
//! clear errors for bad input (moto plays the account).

use std::process::Command;

use crate::common::*;

fn cli(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard")).args(args).envs(moto.env()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_campaign_plan_and_rollback_follow_the_exit_table() {
    let moto = Moto::start();
    let (aws, _) = workload(&moto.endpoint).await;
    let arn = aws
        .kms()
        .create_key()
        .origin("EXTERNAL".into())
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    aws.kms().create_alias().alias_name("alias/dev-unused").target_key_id(&arn).send().await.unwrap();
    let dir = tempdir::TempDir::new("runbook-cli");
    let scan = dir.path().join("scan.json");
    std::fs::write(&scan, "[]").unwrap();

    // Findings (an unused key, an imported key without the guard tag): exit 1, JSON on stdout.
    let (code, out, err) = cli(&moto, &["keys", "--resources", scan.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1, "{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inv["keys"][0]["aliases"][0], "alias/dev-unused");
    // Bad input: exit 2, one clear line.
    std::fs::write(&scan, "{not json").unwrap();
    let (code, _, err) = cli(&moto, &["keys", "--resources", scan.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("the scan export is not JSON"), "{err}");
    let plan = dir.path().join("campaign.toml");
    std::fs::write(&plan, "order = [\"dev\"]\nsoak = 5\n").unwrap();
    let (code, _, err) = cli(&moto, &["campaign", "plan", "--plan", plan.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("the plan file") && err.contains("soak"), "{err}");
    let (code, _, err) = cli(&moto, &["campaign", "plan", "--change-id", "CHG 1"]);
    assert_eq!(code, 2, "{err}");
    // A plan that changes nothing: exit 0, the key outside the campaign with its reason.
    let (code, out, err) = cli(&moto, &["campaign", "plan", "--change-id", "CHG-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("not tagged kms-rotation-guard=enabled") && out.contains("nothing was changed"), "{out}");
    // Nothing to roll back: a refusal a person must read, exit 1.
    let (code, _, err) = cli(&moto, &["rollback", "--key", "alias/dev-unused"]);
    assert_eq!(code, 1);
    assert!(err.contains("no rotation recorded"), "{err}");
    // retire wants the replaced key, not an alias.
    let (code, _, err) = cli(&moto, &["retire", "--key", "alias/dev-unused", "--grace-days", "30"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an alias"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_scan_the_accounts_itself() {
    let moto = Moto::start();
    let (aws, _) = workload(&moto.endpoint).await;
    let arn = aws.kms().create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    kms_rotation_guard::testbed::bucket(&aws, "invoices-runbook", kms_rotation_guard::testbed::Sse::Kms(Some(&arn)))
        .await
        .unwrap();
    let (code, out, err) = cli(&moto, &["keys", "--accounts", WORKLOAD, "--format", "json"]);
    assert!(code == 0 || code == 1, "{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let users = &inv["keys"][0]["resources"];
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{inv}");
    assert_eq!(users[0]["resourceId"], "invoices-runbook");
    assert!(inv["resourcesFrom"].as_str().unwrap().contains("organization scan of 1 account"), "{inv}");
}
