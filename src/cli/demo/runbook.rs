//! The demo's last part (issue 22): the runbook over dev, int and prod keys — the inventory,
//! then a campaign in waves dev → int → prod with a short soak. Kept apart from the rest of
//! the demo so the demo's estate can change without touching it: it seeds three keys of its
//! own, due for rotation, and needs only the security account's KMS and the HSM.
//!
//! LocalStack has no CloudTrail: the soak asks a stand-in on loopback that answers
//! LookupEvents as AWS does for a quiet key (no events). The demo says so.

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;

use chrono::Utc;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rotation::hsm::KeyMaterialSource;
use kms_rotation_guard::rotation::Rotator;
use kms_rotation_guard::runbook::campaign::{self, PlanFile, RunSettings};
use kms_rotation_guard::runbook::inventory::{self, InventoryPolicy};
use kms_rotation_guard::testbed as seed;

use super::steps::{request, tag};

/// What the runbook part did, for `demo --format json`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunbookDemo {
    pub inventory: inventory::Inventory,
    pub plan: campaign::Plan,
    pub campaign: campaign::CampaignReport,
}

/// A loopback stand-in for CloudTrail's LookupEvents: every key is quiet.
fn quiet_cloudtrail() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = std::io::BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = r#"{"Events":[]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    Ok(endpoint)
}

pub async fn run(
    security: &Aws,
    hsm: &dyn KeyMaterialSource,
    say: &(dyn Fn(&str) + Send + Sync),
) -> anyhow::Result<RunbookDemo> {
    say("\n== The runbook: inventory, then a campaign dev -> int -> prod (docs/runbook.md)");
    // Three guarded keys, one per environment, whose material the tag says is 400 days old.
    let old = (Utc::now() - chrono::Duration::days(400)).format("%Y-%m-%d").to_string();
    let rotator = Rotator::new(security, hsm);
    for env in ["dev", "int", "prod"] {
        let id = seed::key(
            security,
            &format!("{env}-payments"),
            aws_sdk_kms::types::OriginType::External,
            &[("Environment", env), ("Service", "payments"), ("kms-rotation-guard", "enabled")],
        )
        .await?;
        rotator.rotate(&request(&id)).await?;
        tag(security, &id, "LastRotationDate", &old).await?;
    }

    let region = security.region();
    let account = security.sts().get_caller_identity().send().await?.account().unwrap_or_default().to_string();
    let inv = inventory::read(
        security,
        &account,
        std::slice::from_ref(&region),
        Some(hsm),
        None,
        &InventoryPolicy::default(),
        Utc::now(),
        &|_| {},
    )
    .await?;
    say("\n== keys: every key of the security account");
    say(inventory::table(&inv).trim_end());

    say("\n   (LocalStack has no CloudTrail: the soak asks a loopback stand-in answering LookupEvents with no events)");
    let watched = Aws::new(security.sdk_config().clone()).with_service_endpoint("cloudtrail", quiet_cloudtrail()?);
    let c = PlanFile::parse("soak_minutes = 0\npoll_seconds = 1\n")?.resolve(None)?;
    let change = "CHG-DEMO-1";
    let candidates = campaign::candidates(&watched, &c, Utc::now()).await?;
    let plan = campaign::plan(&candidates, &c, Some(change));
    say("\n== campaign plan --change-id CHG-DEMO-1");
    say(campaign::plan_table(&plan).trim_end());
    say("\n== campaign run --change-id CHG-DEMO-1");
    let rotator = Rotator::new(&watched, hsm);
    let line = |m: &str| say(&format!("   {m}"));
    let settings = RunSettings {
        change_id: change.into(),
        request: request(""),
        claim_settle: std::time::Duration::from_millis(100),
        say: &line,
    };
    let report = campaign::run(&watched, &rotator, &c, &plan, &settings).await?;
    say(report.table().trim_end());
    Ok(RunbookDemo { inventory: inv, plan, campaign: report })
}
