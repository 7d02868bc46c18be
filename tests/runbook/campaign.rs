//! `campaign plan|run` on LocalStack + SoftHSM: three keys (dev, int, prod) due for rotation,
//! a change calendar (AWS-shaped GetCalendarState replies) and a soak that reads CloudTrail
//! (AWS-shaped LookupEvents replies). The change id lands in the record and the key's tag; a
//! second run with the same id rotates nothing; a failure in the soak stops the campaign
//! before the next wave; a closed calendar stops it before any rotation.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use kms_rotation_guard::rotation::{Rotator, CHANGE_ID_TAG};
use kms_rotation_guard::runbook::campaign::{self, Campaign, PlanFile, RunSettings};
use serde_json::json;

use crate::common::*;
use crate::*;

/// Three guarded keys, one per environment, whose material is 400 days old by its tag.
async fn estate(aws: &Aws, prefix: &str) -> Vec<String> {
    let old = ymd(days_from_now(-400));
    let mut keys = Vec::new();
    for env in ["dev", "int", "prod"] {
        let arn =
            byok_key(aws, &format!("{prefix}-{env}"), &[("Environment", env), ("kms-rotation-guard", "enabled")]).await;
        aws.kms()
            .tag_resource()
            .key_id(&arn)
            .tags(aws_sdk_kms::types::Tag::builder().tag_key("LastRotationDate").tag_value(&old).build().unwrap())
            .send()
            .await
            .unwrap();
        keys.push(arn);
    }
    keys
}

fn settings(calendar: bool) -> Campaign {
    let text = if calendar { "change_calendar = \"prod-changes\"\npoll_seconds = 1\n" } else { "poll_seconds = 1\n" };
    PlanFile::parse(text).unwrap().resolve(Some(0)).unwrap()
}

async fn run_campaign(aws: &Aws, c: &Campaign, change: &str) -> campaign::CampaignReport {
    let candidates = campaign::candidates(aws, c, Utc::now()).await.unwrap();
    let plan = campaign::plan(&candidates, c, Some(change));
    let rotator = Rotator::new(aws, softhsm());
    let say = |_: &str| {};
    let s = RunSettings {
        change_id: change.into(),
        request: request(""),
        claim_settle: StdDuration::from_millis(50),
        say: &say,
    };
    campaign::run(aws, &rotator, c, &plan, &s).await.unwrap()
}

fn outcomes(r: &campaign::CampaignReport) -> Vec<(String, Vec<String>)> {
    r.waves.iter().map(|w| (w.name.clone(), w.keys.iter().map(|k| k.outcome.clone()).collect())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_dev_int_prod_with_the_change_id_and_a_resumed_run_rotates_nothing_twice() {
    let ls = LocalStack::start();
    let (trail_url, _, trail_seen) = fake_trail();
    let (cal_url, cal_seen) = fake_calendar("OPEN");
    let (aws, counter) = aws_at(&ls, Some(&trail_url), Some(&cal_url)).await;
    let keys = estate(&aws, "cp").await;
    let c = settings(true);

    // The plan changes nothing and shows each key due, in order.
    counter.reset();
    let candidates = campaign::candidates(&aws, &c, Utc::now()).await.unwrap();
    let plan = campaign::plan(&candidates, &c, Some("CHG-100"));
    let waves: Vec<_> = plan
        .waves
        .iter()
        .map(|w| (w.name.as_str(), w.keys.iter().map(|k| k.verdict.as_str()).collect::<Vec<_>>()))
        .collect();
    assert_eq!(waves, vec![("dev", vec!["rotate"]), ("int", vec!["rotate"]), ("prod", vec!["rotate"])]);
    assert_eq!(kms_writes(&counter), Vec::<String>::new(), "plan changes nothing");

    let r = run_campaign(&aws, &c, "CHG-100").await;
    assert!(r.stopped.is_none(), "{}", r.table());
    assert_eq!(
        outcomes(&r),
        vec![
            ("dev".into(), vec!["rotated".to_string()]),
            ("int".into(), vec!["rotated".into()]),
            ("prod".into(), vec!["rotated".into()])
        ]
    );
    for k in &keys {
        assert_eq!(tags_of(&aws, k).await.get(CHANGE_ID_TAG).map(String::as_str), Some("CHG-100"));
    }
    // Each soak lasts its full time from the wave's start (CloudTrail's lookback is earlier).
    for w in &r.waves {
        let s = w.soak.as_ref().expect("every wave rotated a key, so every wave soaks");
        assert_eq!((s.from, s.until - s.from), (w.started, c.soak), "wave {}", w.name);
    }
    let record = r.waves[0].keys[0].record.as_ref().unwrap();
    assert_eq!(record.change_id.as_deref(), Some("CHG-100"));
    assert!(serde_json::to_string(record).unwrap().contains("\"changeId\":\"CHG-100\""));
    assert!(cal_seen.lock().unwrap().len() >= 3, "the calendar is asked before each rotation");
    let looked_up: Vec<String> = trail_seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["LookupAttributes"][0]["AttributeValue"].as_str().unwrap().to_string())
        .collect();
    for k in &keys {
        assert!(looked_up.contains(k), "the soak watched {k}");
    }

    // The same change again: every key is done, nothing is imported or rotated.
    counter.reset();
    let again = run_campaign(&aws, &c, "CHG-100").await;
    assert!(again.stopped.is_none());
    assert!(outcomes(&again).iter().all(|(_, o)| o == &vec!["done".to_string()]), "{:?}", outcomes(&again));
    for op in ["kms.ImportKeyMaterial", "kms.RotateKeyOnDemand", "kms.GetParametersForImport"] {
        assert_eq!(counter.get(op), 0, "{op} on a resumed run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_soak_stops_before_the_next_wave() {
    let ls = LocalStack::start();
    let (trail_url, trail, _) = fake_trail();
    let (aws, _) = aws_at(&ls, Some(&trail_url), None).await;
    let keys = estate(&aws, "cf").await;
    // A workload in another account fails to decrypt with the dev key right after the wave began.
    let soon = (Utc::now() + Duration::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    trail.lock().unwrap().push(kms_record(
        "Decrypt",
        &keys[0],
        "222222222222",
        Some("InvalidCiphertextException"),
        json!({"app": "orders"}),
        &soon,
    ));
    // Our own probe failing is not a workload failure.
    trail.lock().unwrap().push(kms_record(
        "Decrypt",
        &keys[1],
        LS_ACCOUNT,
        Some("InvalidCiphertextException"),
        json!({"kms-rotation-guard:probe": "verification"}),
        &soon,
    ));
    let mut c = settings(false);
    // CloudTrail is read from a minute before the wave (clock slack); the soak lasts 30 s.
    c.soak = Duration::seconds(30);
    let r = run_campaign(&aws, &c, "CHG-200").await;
    let stopped = r.stopped.as_ref().expect("stopped");
    assert_eq!(stopped.wave, "dev");
    assert!(
        stopped.reason.contains("222222222222") && stopped.reason.contains("InvalidCiphertextException"),
        "{}",
        stopped.reason
    );
    assert!(
        stopped.what_to_do.contains("rollback") && stopped.what_to_do.contains("--change-id CHG-200"),
        "{}",
        stopped.what_to_do
    );
    assert_eq!(r.waves.len(), 1, "int and prod never started");
    for k in &keys[1..] {
        assert!(!tags_of(&aws, k).await.contains_key(CHANGE_ID_TAG), "{k} was not rotated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_change_calendar_stops_before_any_rotation() {
    let ls = LocalStack::start();
    let (trail_url, _, _) = fake_trail();
    let (cal_url, seen) = fake_calendar("CLOSED");
    let (aws, counter) = aws_at(&ls, Some(&trail_url), Some(&cal_url)).await;
    estate(&aws, "cc").await;
    counter.reset();
    let r = run_campaign(&aws, &settings(true), "CHG-300").await;
    let stopped = r.stopped.expect("stopped");
    assert!(stopped.reason.contains("prod-changes is CLOSED until 2026-12-05T23:00:00Z"), "{}", stopped.reason);
    assert_eq!(seen.lock().unwrap()[0].1["CalendarNames"], json!(["prod-changes"]));
    assert_eq!(counter.get("kms.ImportKeyMaterial") + counter.get("kms.RotateKeyOnDemand"), 0);
}
