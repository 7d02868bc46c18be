//! The gate's pure decisions (`assess`, `finding_check`) and the stable error classes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::key::{Denial, Fact, KeyFacts, KeyManager, Rotation};
use crate::params::RuleParams;
use crate::rotation::Strategy;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

fn day(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// An Enabled EXTERNAL key whose tag says it was rotated `age` days ago.
fn key(age: i64) -> KeyFacts {
    let mut f = KeyFacts::new("1234abcd-12ab-34cd-56ef-1234567890ab", "111122223333", "EXTERNAL");
    f.tags = Fact::Known(BTreeMap::from([("LastRotationDate".to_string(), day(now() - Duration::days(age)))]));
    f
}

fn unsupported<T>() -> Fact<T> {
    Fact::Unsupported("kms:ListKeyRotations is not implemented by this endpoint".into())
}

fn is_rotate(n: &Need) -> bool {
    matches!(n, Need::Rotate(_))
}

fn reason(n: &Need) -> &str {
    match n {
        Need::Rotate(s) | Need::Resume(s) | Need::Skip(s) | Need::Refuse(s) => s,
        Need::Denied(d) => &d.action,
    }
}

#[test]
fn rotation_is_due_from_max_age_minus_warning_not_before() {
    let p = RuleParams::default(); // 365 − 30 = 335
    for (age, due) in [(0, false), (100, false), (334, false), (335, true), (365, true), (400, true)] {
        let n = assess(&key(age), &unsupported(), &p, now());
        assert_eq!(is_rotate(&n), due, "age {age}: {n:?}");
        if !due {
            assert!(reason(&n).contains("does not need rotating") && reason(&n).contains("335"), "{n:?}");
        }
    }
    let p = RuleParams { max_key_age_days: 90, expiry_warning_days: 10, ..RuleParams::default() };
    assert!(!is_rotate(&assess(&key(79), &unsupported(), &p, now())));
    assert!(is_rotate(&assess(&key(80), &unsupported(), &p, now())));
    // A warning window as long as the limit never makes a same-day rotation due.
    let p = RuleParams { max_key_age_days: 30, expiry_warning_days: 30, ..RuleParams::default() };
    assert!(!is_rotate(&assess(&key(0), &unsupported(), &p, now())));
}

#[test]
fn an_on_demand_rotation_in_the_last_24_hours_blocks_another() {
    let p = RuleParams { verify_tag_against_kms: false, ..RuleParams::default() };
    let stale = key(400);
    let recent = Fact::Known(vec![now() - Duration::hours(23)]);
    let n = assess(&stale, &recent, &p, now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("on demand") && r.contains("24 hours")), "{n:?}");
    let old = Fact::Known(vec![now() - Duration::hours(25), now() - Duration::days(300)]);
    assert!(is_rotate(&assess(&stale, &old, &p, now())));
    assert!(is_rotate(&assess(&stale, &Fact::Known(vec![]), &p, now())));
}

#[test]
fn the_tag_is_not_believed_against_kms_and_kms_is_not_outvoted_by_an_old_tag() {
    let p = RuleParams::default();
    let rotation = |d: DateTime<Utc>| Rotation {
        date: Some(d),
        material_id: Some("m".into()),
        material_state: Some("CURRENT".into()),
        expiration_model: None,
        valid_to: None,
    };
    // Tag says 400 days, KMS rotated 10 days ago (someone forgot the tag): not due.
    let mut f = key(400);
    f.rotations = Fact::Known(vec![rotation(now() - Duration::days(10))]);
    let n = assess(&f, &Fact::Known(vec![]), &p, now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("would not fix") && r.contains("LastRotationDate")), "{n:?}");
    // Tag says yesterday, KMS's newest material is 400 days old: the tag lies, rotate.
    let mut f = key(1);
    f.rotations = Fact::Known(vec![rotation(now() - Duration::days(400))]);
    assert!(
        is_rotate(&assess(&f, &Fact::Known(vec![]), &p, now())),
        "{:?}",
        assess(&f, &Fact::Known(vec![]), &p, now())
    );
}

#[test]
fn a_key_of_unknown_age_is_left_to_an_operator() {
    let mut f = key(0);
    f.tags = Fact::Known(BTreeMap::new());
    let n = assess(&f, &unsupported(), &RuleParams::default(), now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("unknown") && r.contains("--force")), "{n:?}");
    // Nor does KMS's history date it: ListKeyRotations gives a key's first import no date,
    // and the import may have come long after CreateKey, so the creation date bounds the
    // material's age from above only. Spending a rotation on a guess is what the gate is for.
    f.created = Some(now() - Duration::days(500));
    f.rotations = Fact::Known(vec![]);
    let n = assess(&f, &Fact::Known(vec![]), &RuleParams::default(), now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("--force")), "{n:?}");
}

/// Expiring material is never answered with a rotation (issue 19): the gate skips and names
/// the re-import that gives the material a later date.
#[test]
fn expiring_material_is_never_rotated_and_the_reimport_is_named() {
    let mut f = key(10);
    f.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
    f.valid_to = Some(now() + Duration::days(5));
    let n = assess(&f, &unsupported(), &RuleParams::default(), now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("kms-rotation-guard reimport --key")), "{n:?}");
    // A NON_CURRENT material expiring while the CURRENT one does not: named by its id.
    f.expiration_model = Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into());
    f.rotations = Fact::Known(vec![Rotation {
        date: None,
        material_id: Some("old-material".into()),
        material_state: Some("NON_CURRENT".into()),
        expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
        valid_to: Some(now() + Duration::days(5)),
    }]);
    let n = assess(&f, &unsupported(), &RuleParams::default(), now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("--key-material-id old-material")), "{n:?}");
    f.valid_to = Some(now() + Duration::days(200));
    if let Fact::Known(rs) = &mut f.rotations {
        rs[0].valid_to = f.valid_to;
    }
    assert!(!is_rotate(&assess(&f, &unsupported(), &RuleParams::default(), now())));
    // PendingImport after the material expired: re-import, never a rotation.
    let mut lost = key(10);
    lost.state = "PendingImport".into();
    lost.current_material_id = Some("m".into());
    let n = assess(&lost, &Fact::NotRead, &RuleParams::default(), now());
    assert!(matches!(&n, Need::Skip(r) if r.contains("reimport --key")), "{n:?}");
}

#[test]
fn keys_rotation_cannot_fix_are_skipped_and_unsafe_ones_refused() {
    let p = RuleParams::default();
    let mut aws = key(400);
    aws.manager = KeyManager::Aws;
    assert!(matches!(assess(&aws, &unsupported(), &p, now()), Need::Skip(r) if r.contains("AWS-managed")));
    let mut native = key(400);
    native.origin = "AWS_KMS".into();
    assert!(matches!(assess(&native, &unsupported(), &p, now()), Need::Skip(r) if r.contains("EnableKeyRotation")));
    let mut doomed = key(400);
    doomed.state = "PendingDeletion".into();
    assert!(matches!(assess(&doomed, &unsupported(), &p, now()), Need::Refuse(r) if r.contains("pending deletion")));
    let mut disabled = key(400);
    disabled.state = "Disabled".into();
    assert!(matches!(assess(&disabled, &unsupported(), &p, now()), Need::Refuse(_)));
    let mut mrk = key(400);
    mrk.multi_region = true;
    assert!(matches!(assess(&mrk, &unsupported(), &p, now()), Need::Refuse(r) if r.contains("multi-Region")));
    let mut empty = key(0);
    empty.state = "PendingImport".into();
    empty.tags = Fact::NotRead;
    assert!(matches!(assess(&empty, &Fact::NotRead, &p, now()), Need::Rotate(r) if r.contains("first import")));
    let denial = Denial { action: "kms:ListKeyRotations".into(), hint: "grant it".into() };
    assert!(matches!(assess(&key(400), &Fact::Denied(denial.clone()), &p, now()), Need::Denied(d) if d == denial));
    let mut hidden = key(400);
    hidden.tags = Fact::Denied(Denial { action: "kms:ListResourceTags".into(), hint: "grant it".into() });
    assert!(matches!(assess(&hidden, &unsupported(), &p, now()), Need::Denied(_)));
}

#[test]
fn a_half_done_rotation_is_resumed_whatever_the_age() {
    let mut f = key(0);
    if let Fact::Known(t) = &mut f.tags {
        t.insert(crate::rotation::PENDING_TAG.into(), "material-2".into());
    }
    let recent = Fact::Known(vec![now() - Duration::hours(1)]);
    assert!(matches!(assess(&f, &recent, &RuleParams::default(), now()), Need::Resume(r) if r.contains("material-2")));
}

#[test]
fn findings_rotation_cannot_fix_are_known_from_the_request() {
    let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    assert!(finding_check("", Some(ResourceKind::S3), Strategy::InPlace).unwrap().contains("no customer managed"));
    assert!(finding_check("alias/aws/s3", Some(ResourceKind::S3), Strategy::InPlace).unwrap().contains("AWS-managed"));
    for kind in [ResourceKind::Rds, ResourceKind::DynamoDb] {
        let why = finding_check("alias/prod", Some(kind), Strategy::AliasSwap).unwrap();
        assert!(why.contains("stores the key ARN"), "{why}");
        assert_eq!(finding_check("alias/prod", Some(kind), Strategy::InPlace), None);
    }
    assert_eq!(finding_check("alias/prod", Some(ResourceKind::S3), Strategy::AliasSwap), None);
    assert_eq!(finding_check(key, None, Strategy::InPlace), None);
}

#[test]
fn error_types_are_stable_per_class() {
    use crate::rotation::RotationError;
    let cases: Vec<(RemediationError, &str)> = vec![
        (RemediationError::MalformedPayload("x".into()), "InvalidRequest"),
        (RemediationError::InvalidSettings("x".into()), "ConfigurationError"),
        (RemediationError::Refused("x".into()), "RemediationRefused"),
        (RotationError::Refused("x".into()).into(), "RemediationRefused"),
        (
            RotationError::Aws { operation: "kms:ImportKeyMaterial", transient: true, message: "x".into() }.into(),
            "TransientAwsError",
        ),
        (
            RotationError::Aws {
                operation: "kms:ImportKeyMaterial",
                transient: false,
                message: "AccessDeniedException: no".into(),
            }
            .into(),
            "AccessDenied",
        ),
        (
            RemediationError::AccessDenied { operation: "kms:ListKeyRotations".into(), message: "x".into() },
            "AccessDenied",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(e.error_type(), want, "{e}");
    }
}

/// Issue 20: who asks comes from the transport. An EventBridge event is a workload's request
/// from the envelope's `account`; anything else is an operator's direct invocation.
#[test]
fn the_transport_says_who_asks() {
    use serde_json::json;
    let detail = json!({"keyId": "arn:aws:kms:eu-west-1:999999999999:key/k", "resourceId": "b"});
    let event = json!({
        "version": "0", "id": "e-1", "detail-type": REQUEST_DETAIL_TYPE, "source": WORKLOAD_SOURCE,
        "account": "111122223333", "time": "2026-11-24T12:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": detail
    });
    assert!(is_bus_event(&event));
    let (who, req) = incoming(event.clone()).unwrap();
    assert_eq!(who, Requester::Workload { account: "111122223333".into() });
    assert_eq!(req, detail, "the request is the detail, unchanged");
    // A request that names an account in its own body is still the envelope's account's.
    let mut claims = event.clone();
    claims["detail"]["account"] = json!("999999999999");
    assert_eq!(incoming(claims).unwrap().0, Requester::Workload { account: "111122223333".into() });
    // Anything else through the bus is malformed, not an operator's request.
    for (k, v) in [
        ("source", json!("aws.kms")),
        ("detail-type", json!("Other")),
        ("account", json!("1111")),
        ("account", json!(null)),
        ("detail", json!("{\"keyId\": \"x\"}")),
    ] {
        let mut e = event.clone();
        e[k] = v.clone();
        let err = incoming(e).unwrap_err();
        assert!(matches!(err, RemediationError::MalformedPayload(_)), "{k}={v}: {err}");
    }
    // A direct invocation: the payload is the request, and the requester the operator.
    let (who, req) = incoming(detail.clone()).unwrap();
    assert_eq!((who, req), (Requester::Operator, detail));
    assert!(!is_bus_event(&json!({"keyId": "alias/x"})));
}
