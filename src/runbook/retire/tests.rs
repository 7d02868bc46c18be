//! The pure decision: refusals in the issue's order, the whole retirement path, the tag.

use super::*;
use serde_json::json;

const KEY: &str = "arn:aws:kms:eu-west-1:111111111111:key/old";

fn now() -> DateTime<Utc> {
    "2026-12-04T12:00:00Z".parse().unwrap()
}

fn ready() -> RetireFacts {
    RetireFacts {
        key_arn: KEY.into(),
        state: Some("Enabled".into()),
        tags: [(SUCCESSOR_TAG.to_string(), "new".to_string())].into(),
        aliases: vec![],
        successor: Some(("arn:aws:kms:eu-west-1:111111111111:key/new".into(), true)),
        scan: Some(ScanEvidence {
            scan_time: now() - Duration::hours(2),
            time_source: "scanTime".into(),
            users: vec![],
            blind_spots: vec![],
        }),
        last_use: None,
        failed_since_disable: vec![],
        deletion_date: None,
    }
}

fn call(error: Option<&str>) -> KeyCall {
    let mut r = json!({"eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "eventTime": "2026-12-01T00:00:00Z",
        "userIdentity": {"accountId": "222222222222", "arn": "arn:aws:sts::222222222222:assumed-role/app/x"},
        "resources": [{"type": "AWS::KMS::Key", "ARN": KEY}]});
    if let Some(e) = error {
        r["errorCode"] = json!(e);
    }
    KeyCall::from_record(&r).unwrap()
}

#[test]
fn refuses_in_the_issues_order() {
    let mut f = ready();
    f.successor = None;
    f.last_use = Some(call(None));
    let Step::Refuse(why) = decide(&f, 30, now()) else { panic!() };
    assert!(why.contains("no successor"), "{why}");

    let mut f = ready();
    f.scan.as_mut().unwrap().users.push(UsageRow {
        account: "2".into(),
        region: "eu-west-1".into(),
        resource_type: "AWS::S3::Bucket".into(),
        resource_id: "b".into(),
        key_arn: Some(KEY.into()),
        key_reference: None,
    });
    f.last_use = Some(call(None));
    let Step::Refuse(why) = decide(&f, 30, now()) else { panic!() };
    assert!(why.contains("still use") && why.contains("AWS::S3::Bucket b"), "{why}");

    let mut f = ready();
    f.last_use = Some(call(None));
    let Step::Refuse(why) = decide(&f, 30, now()) else { panic!() };
    assert!(why.contains("CloudTrail shows") && why.contains("222222222222"), "{why}");
}

#[test]
fn an_old_or_blind_scan_proves_nothing() {
    let mut f = ready();
    f.scan.as_mut().unwrap().scan_time = now() - Duration::hours(25);
    assert!(matches!(decide(&f, 30, now()), Step::Refuse(w) if w.contains("more than a day old")));
    let mut f = ready();
    f.scan.as_mut().unwrap().blind_spots.push("3 eu-west-1: not-scanned".into());
    assert!(matches!(decide(&f, 30, now()), Step::Refuse(w) if w.contains("did not see everything")));
    let mut f = ready();
    f.scan = None;
    assert!(matches!(decide(&f, 30, now()), Step::Refuse(_)));
    let mut f = ready();
    f.aliases = vec!["alias/x".into()];
    assert!(matches!(decide(&f, 30, now()), Step::Refuse(w) if w.contains("alias/x")));
}

#[test]
fn the_whole_path_disable_wait_schedule_pending_destroy() {
    assert_eq!(decide(&ready(), 30, now()), Step::Disable);
    let mut f = ready();
    f.state = Some("Disabled".into());
    f.tags.insert(RETIREMENT_TAG.into(), "disabled 2026-11-20T12:00:00Z grace 30d".into());
    assert_eq!(decide(&f, 30, now()), Step::Wait { until: "2026-12-20T12:00:00Z".parse().unwrap() });
    // Later, with a fresh scan (a day-old scan proves nothing).
    f.scan.as_mut().unwrap().scan_time = "2026-12-20T23:00:00Z".parse().unwrap();
    assert_eq!(decide(&f, 30, "2026-12-21T00:00:00Z".parse().unwrap()), Step::ScheduleDeletion);
    // A shorter grace on the later run does not shorten the one the key was given.
    assert!(matches!(decide(&f, 1, now()), Step::Wait { .. }));
    f.failed_since_disable = vec![call(Some("DisabledException"))];
    assert!(
        matches!(decide(&f, 30, "2026-12-21T00:00:00Z".parse().unwrap()), Step::Refuse(w) if w.contains("rollback"))
    );
    let mut f = ready();
    f.state = Some("PendingDeletion".into());
    assert!(matches!(decide(&f, 30, now()), Step::PendingDeletion { .. }));
    f.state = None;
    assert_eq!(decide(&f, 30, now()), Step::DestroyHsmObjects);
    let mut f = ready();
    f.state = Some("Disabled".into());
    assert!(matches!(decide(&f, 30, now()), Step::Refuse(w) if w.contains("not by `retire`")));
}

#[test]
fn reads_its_own_tag() {
    assert_eq!(disabled_at("disabled 2026-11-20T12:00:00Z grace 14d").unwrap().1, 14);
    assert!(disabled_at("rolled back").is_none());
}
