//! Every branch of the verdict, in specification order, with the boundaries. The expiry of
//! imported material (any of a key's materials) is in `expiry`.

mod expiry;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::key::{AutoRotation, Denial, Fact, KeyFacts, KeyLookup, KeyManager, KeyRef, Rotation};

const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn days_ago(n: i64) -> DateTime<Utc> {
    now() - Duration::days(n)
}

fn alias() -> Protection {
    Protection::Kms(KeyRef::parse("alias/prod-s3").unwrap())
}

/// An enabled EXTERNAL key, created 1000 days ago, never rotated, tagged `tag`.
fn external(tag: Option<&str>) -> KeyFacts {
    let mut f = KeyFacts::new(ID, "111122223333", "EXTERNAL");
    f.created = Some(days_ago(1000));
    let mut tags = BTreeMap::new();
    if let Some(t) = tag {
        tags.insert("LastRotationDate".to_string(), t.to_string());
    }
    f.tags = Fact::Known(tags);
    f.rotations = Fact::Known(vec![]);
    f
}

fn rotated_on(f: &mut KeyFacts, when: DateTime<Utc>) {
    f.rotations = Fact::Known(vec![Rotation {
        date: Some(when),
        material_id: Some("m2".into()),
        material_state: Some("CURRENT".into()),
        expiration_model: None,
        valid_to: None,
    }]);
}

fn judge(f: KeyFacts) -> Verdict {
    judge_with(f, &RuleParams::default())
}

fn judge_with(f: KeyFacts, p: &RuleParams) -> Verdict {
    decide(&alias(), Some(&KeyLookup::Found(Box::new(f))), p, now())
}

fn date(n: i64) -> String {
    days_ago(n).format("%Y-%m-%d").to_string()
}

#[track_caller]
fn expect(v: &Verdict, c: Compliance, words: &[&str]) {
    assert_eq!(v.compliance, c, "{}", v.annotation);
    for w in words {
        assert!(v.annotation.contains(w), "{:?} lacks {w:?}", v.annotation);
    }
    assert!(!v.annotation.is_empty() && v.annotation.chars().count() <= MAX_ANNOTATION);
}

#[test]
fn resources_without_a_customer_key_are_non_compliant() {
    let p = RuleParams::default();
    for prot in
        [Protection::Unencrypted("storage is not encrypted".into()), Protection::S3Managed, Protection::AwsOwnedKey]
    {
        expect(
            &decide(&prot, None, &p, now()),
            Compliance::NonCompliant,
            &["not encrypted with a customer managed KMS key"],
        );
    }
}

#[test]
fn aws_managed_keys_depend_on_the_parameter() {
    let managed = Protection::Kms(KeyRef::parse("alias/aws/s3").unwrap());
    let deny = RuleParams::default();
    let allow = RuleParams { allow_aws_managed_keys: true, ..RuleParams::default() };
    expect(&decide(&managed, None, &deny, now()), Compliance::NonCompliant, &["AWS-managed", "allowAwsManagedKeys"]);
    expect(&decide(&managed, None, &allow, now()), Compliance::Compliant, &["AWS-managed"]);
    // Known only after DescribeKey (referenced by key id).
    let mut f = external(None);
    f.manager = KeyManager::Aws;
    expect(&judge_with(f.clone(), &deny), Compliance::NonCompliant, &["AWS-managed"]);
    expect(&judge_with(f, &allow), Compliance::Compliant, &[]);
}

#[test]
fn missing_and_denied_keys_are_findings_naming_what_is_missing() {
    let p = RuleParams::default();
    expect(
        &decide(&alias(), Some(&KeyLookup::NotFound), &p, now()),
        Compliance::NonCompliant,
        &["alias/prod-s3", "not found"],
    );
    let denied =
        KeyLookup::Denied(Denial { action: "kms:DescribeKey".into(), hint: "grant it on the key policy".into() });
    expect(
        &decide(&alias(), Some(&denied), &p, now()),
        Compliance::NonCompliant,
        &["kms:DescribeKey denied", "key policy"],
    );
    expect(&decide(&alias(), None, &p, now()), Compliance::NonCompliant, &["internal"]);
}

#[test]
fn keys_not_enabled_are_non_compliant_whatever_the_tag() {
    for state in ["PendingImport", "Disabled", "PendingDeletion", "Unavailable", "Creating"] {
        let mut f = external(Some(&date(1)));
        f.state = state.into();
        expect(&judge(f), Compliance::NonCompliant, &[state]);
    }
}

/// An AWS_KMS key created `created_days` ago, never rotated, rotation status `auto`.
fn generated(created_days: i64, auto: Option<AutoRotation>) -> KeyFacts {
    let mut f = external(None);
    f.origin = "AWS_KMS".into();
    f.created = Some(days_ago(created_days));
    f.auto_rotation = auto.map(Fact::Known).unwrap_or(Fact::NotRead);
    f
}

#[test]
fn aws_kms_keys_are_judged_by_the_age_of_their_current_material() {
    // A 2021 key with automatic rotation enabled today: AWS first rotates it a year from
    // now, so the material in use is five years old.
    let enabled_today =
        AutoRotation { enabled: true, period_days: Some(365), next_rotation: Some(now() + Duration::days(365)) };
    let f = generated(5 * 365, Some(enabled_today));
    expect(
        &judge(f.clone()),
        Compliance::NonCompliant,
        &["current key material is from", "1825 days old", "automatic rotation next on 2027-11-23"],
    );
    // A tag cannot speak for material KMS generated.
    let mut tagged = f.clone();
    tagged.tags = Fact::Known(BTreeMap::from([("LastRotationDate".into(), date(1))]));
    expect(&judge(tagged), Compliance::NonCompliant, &["1825 days old"]);
    // After its first automatic rotation (ListKeyRotations dates it), it passes.
    let mut rotated = f.clone();
    rotated_on(&mut rotated, days_ago(10));
    expect(&judge(rotated), Compliance::Compliant, &["10 days old", "next on"]);
    // Never rotated, young enough by its creation date, rotation off: passes, and says so.
    let off = AutoRotation { enabled: false, period_days: None, next_rotation: None };
    expect(&judge(generated(100, Some(off))), Compliance::Compliant, &["100 days old", "automatic rotation is off"]);
    // The history is unreadable: the age is unknown, a finding naming the read.
    let mut denied = f.clone();
    denied.rotations =
        Fact::Denied(Denial { action: "kms:ListKeyRotations".into(), hint: "set keyReaderRoleName".into() });
    expect(&judge(denied), Compliance::NonCompliant, &["kms:ListKeyRotations denied"]);
    // An endpoint without ListKeyRotations (an emulator): the tag decides.
    let mut emulated = f;
    emulated.rotations = Fact::Unsupported("kms:ListKeyRotations is not implemented".into());
    expect(&judge(emulated.clone()), Compliance::NonCompliant, &["no LastRotationDate tag"]);
    emulated.tags = Fact::Known(BTreeMap::from([("LastRotationDate".into(), date(10))]));
    expect(&judge(emulated), Compliance::Compliant, &["10 days ago"]);
}

#[test]
fn a_first_import_days_after_create_key_passes_on_its_tag_and_material_id() {
    // Created Monday, material imported and tagged Thursday (today). ListKeyRotations lists
    // the first material without a date, so CreationDate is not the material's date.
    let mut f = external(Some(&date(0)));
    f.created = Some(days_ago(3));
    f.current_material_id = Some("m1".into());
    f.rotations = Fact::Known(vec![Rotation {
        date: None,
        material_id: Some("m1".into()),
        material_state: Some("CURRENT".into()),
        expiration_model: None,
        valid_to: None,
    }]);
    if let Fact::Known(t) = &mut f.tags {
        t.insert(MATERIAL_ID_TAG.into(), "m1".into());
    }
    expect(&judge(f.clone()), Compliance::Compliant, &["0 days ago"]);
    // The material-id check still holds the tag to account.
    f.current_material_id = Some("m2".into());
    expect(&judge(f), Compliance::NonCompliant, &["current key material is m2"]);
}

#[test]
fn custom_key_store_keys_are_judged_by_their_tag_and_say_kms_cannot_rotate_them() {
    let why = "kms:ListKeyRotations: UnsupportedOperationException: not supported for keys in a custom key store";
    for origin in ["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"] {
        let mut f = external(Some(&date(10)));
        f.origin = origin.into();
        f.rotations = Fact::NotForThisKey(why.into());
        f.auto_rotation = Fact::NotForThisKey(why.into());
        expect(&judge(f.clone()), Compliance::Compliant, &["10 days ago", "KMS cannot rotate it"]);
        f.tags = Fact::Known(BTreeMap::from([("LastRotationDate".into(), date(400))]));
        expect(&judge(f), Compliance::NonCompliant, &["400 days ago", "KMS cannot rotate it"]);
    }
}

#[test]
fn not_found_mentions_non_arn_references_only_for_them() {
    let p = RuleParams::default();
    let by_arn = Protection::Kms(KeyRef::parse(&format!("arn:aws:kms:eu-west-1:111122223333:key/{ID}")).unwrap());
    let v = decide(&by_arn, Some(&KeyLookup::NotFound), &p, now());
    expect(&v, Compliance::NonCompliant, &["not found", "deleted"]);
    assert!(!v.annotation.contains("not an ARN"), "{}", v.annotation);
    let v = decide(&alias(), Some(&KeyLookup::NotFound), &p, now());
    expect(&v, Compliance::NonCompliant, &["not found", "the reference is not an ARN"]);
}

#[test]
fn buckets_without_recorded_encryption_have_sse_s3_never_no_encryption() {
    let v = decide(&Protection::S3ManagedByDefault, None, &RuleParams::default(), now());
    expect(&v, Compliance::NonCompliant, &["SSE-S3", "January 2023", "customer managed key"]);
    assert!(!v.annotation.contains("not encrypted") && !v.annotation.contains("no encryption"), "{}", v.annotation);
}

#[test]
fn an_unreadable_resource_is_a_finding_naming_the_action() {
    let prot = Protection::Unreadable(Denial {
        action: "s3:GetEncryptionConfiguration".into(),
        hint: "the bucket policy or an SCP refuses it".into(),
    });
    expect(
        &decide(&prot, None, &RuleParams::default(), now()),
        Compliance::NonCompliant,
        &["s3:GetEncryptionConfiguration denied", "bucket policy"],
    );
}

#[test]
fn tag_problems_say_which() {
    expect(&judge(external(None)), Compliance::NonCompliant, &["no LastRotationDate tag"]);
    expect(&judge(external(Some("last tuesday"))), Compliance::NonCompliant, &["\"last tuesday\"", "not a date"]);
    expect(&judge(external(Some("2025-1-5"))), Compliance::NonCompliant, &["not a date"]);
    expect(&judge(external(Some("2026-11-25"))), Compliance::NonCompliant, &["in the future"]);
    // Within a day ahead is clock skew, not a lie.
    let mut f = external(Some("2026-11-24"));
    rotated_on(&mut f, now());
    expect(&judge(f), Compliance::Compliant, &[]);
    let mut f = external(None);
    f.tags = Fact::Denied(Denial { action: "kms:ListResourceTags".into(), hint: "set keyReaderRoleName".into() });
    expect(&judge(f), Compliance::NonCompliant, &["kms:ListResourceTags denied", "keyReaderRoleName"]);
    let custom = RuleParams { rotation_tag_key: "rotated".into(), ..RuleParams::default() };
    expect(&judge_with(external(Some(&date(3))), &custom), Compliance::NonCompliant, &["no rotated tag"]);
}

#[test]
fn accepted_date_forms() {
    for (raw, want) in [
        ("2026-11-20", "2026-11-20T00:00:00Z"),
        ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"),
        ("2026-11-20T10:00:00+02:00", "2026-11-20T08:00:00Z"),
        (" 2026-11-20T10:00:00.5-05:00 ", "2026-11-20T15:00:00.500Z"),
    ] {
        let got = parse_rotation_date(raw).unwrap();
        assert_eq!(got, DateTime::parse_from_rfc3339(want).unwrap().with_timezone(&Utc), "{raw}");
    }
    for bad in ["", "2026-13-01", "2026-02-30", "20261120", "2026-11-20 10:00", "yesterday", "2026-11-20T10:00:00"] {
        assert!(parse_rotation_date(bad).is_none(), "{bad}");
    }
}

#[test]
fn a_tag_claiming_a_rotation_kms_never_saw_is_caught() {
    // Last rotated 100 days ago by KMS's own account, but the tag says 10 days ago.
    let mut f = external(Some(&date(10)));
    rotated_on(&mut f, days_ago(100));
    expect(&judge(f), Compliance::NonCompliant, &[&format!("tag says {}", date(10)), &format!("from {}", date(100))]);
    // Never rotated: the first import has no date in KMS (it may have come long after
    // CreateKey), so the creation date proves nothing; the material id tag is the check.
    let mut f = external(Some(&date(10)));
    f.current_material_id = Some("m-current".into());
    if let Fact::Known(t) = &mut f.tags {
        t.insert(MATERIAL_ID_TAG.into(), "m-old".into());
    }
    expect(&judge(f), Compliance::NonCompliant, &["says m-old"]);
    // A rotation 10 days ago makes the same tag honest; one day of slack either way.
    let mut f = external(Some(&date(10)));
    rotated_on(&mut f, days_ago(11) + Duration::hours(1));
    expect(&judge(f), Compliance::Compliant, &[]);
    let mut f = external(Some(&date(10)));
    rotated_on(&mut f, days_ago(12));
    expect(&judge(f.clone()), Compliance::NonCompliant, &["KMS saw no rotation"]);
    // Turning verification off trusts the tag.
    let trust = RuleParams { verify_tag_against_kms: false, ..RuleParams::default() };
    expect(&judge_with(f, &trust), Compliance::Compliant, &[]);
    // A key created recently and never rotated: the tag at creation is fine.
    let mut f = external(Some(&date(5)));
    f.created = Some(days_ago(5));
    expect(&judge(f), Compliance::Compliant, &[]);
}

#[test]
fn unreadable_rotation_history_is_a_finding_unless_verification_is_off() {
    let mut f = external(Some(&date(10)));
    f.rotations =
        Fact::Denied(Denial { action: "kms:ListKeyRotations".into(), hint: "grant it to the reader role".into() });
    expect(&judge(f.clone()), Compliance::NonCompliant, &["kms:ListKeyRotations denied", "verifyTagAgainstKms=false"]);
    let trust = RuleParams { verify_tag_against_kms: false, ..RuleParams::default() };
    expect(&judge_with(f.clone(), &trust), Compliance::Compliant, &[]);
    // An endpoint without ListKeyRotations: only the material-id check remains.
    f.rotations = Fact::Unsupported("ListKeyRotations not implemented".into());
    expect(&judge(f), Compliance::Compliant, &[]);
}

#[test]
fn material_id_tag_must_match_current_material() {
    let mut f = external(Some(&date(10)));
    f.rotations = Fact::Unsupported("n/a".into());
    f.current_material_id = Some("aaa".into());
    if let Fact::Known(t) = &mut f.tags {
        t.insert(MATERIAL_ID_TAG.into(), "bbb".into());
    }
    expect(&judge(f.clone()), Compliance::NonCompliant, &["says bbb", "current key material is aaa"]);
    if let Fact::Known(t) = &mut f.tags {
        t.insert(MATERIAL_ID_TAG.into(), "aaa".into());
    }
    expect(&judge(f), Compliance::Compliant, &[]);
}

#[test]
fn age_boundary_is_inclusive_at_the_limit() {
    let aged = |n: i64| {
        let mut f = external(Some(&date(n)));
        rotated_on(&mut f, days_ago(n));
        f
    };
    expect(&judge(aged(364)), Compliance::Compliant, &["364 days ago", "next due"]);
    expect(
        &judge(aged(365)),
        Compliance::Compliant,
        &["365 days ago", &format!("next due {}", now().format("%Y-%m-%d"))],
    );
    expect(&judge(aged(366)), Compliance::NonCompliant, &["366 days ago", "limit 365 days"]);
    let p = RuleParams { max_key_age_days: 1, ..RuleParams::default() };
    expect(&judge_with(aged(1), &p), Compliance::Compliant, &[]);
    expect(&judge_with(aged(2), &p), Compliance::NonCompliant, &["limit 1 days"]);
}

#[test]
fn annotations_fit_in_256_characters() {
    let long_alias = format!("alias/{}", "x".repeat(240));
    let prot = Protection::Kms(KeyRef::parse(&long_alias).unwrap());
    let mut f = external(Some(&"9".repeat(300)));
    f.state = "Enabled".into();
    let v = decide(&prot, Some(&KeyLookup::Found(Box::new(f))), &RuleParams::default(), now());
    assert!(v.annotation.chars().count() <= MAX_ANNOTATION);
    assert_eq!(fit_annotation(""), "no details");
    assert_eq!(fit_annotation(&"é".repeat(300)).chars().count(), 256);
}

/// Issue 20: at `minRotationsLeft` on-demand rotations left or fewer the verdict says "few
/// rotations left", whatever it decided, within Config's 256 characters.
#[test]
fn few_rotations_left_is_said_in_the_verdict() {
    let rotated = |n: usize, newest: i64| {
        let mut f = external(Some(&date(newest)));
        let rs: Vec<Rotation> = (0..n)
            .map(|i| Rotation {
                date: Some(days_ago(newest + (n - 1 - i) as i64 * 30)),
                material_id: Some(format!("m{i}")),
                material_state: Some(if i + 1 == n { "CURRENT" } else { "NON_CURRENT" }.into()),
                expiration_model: None,
                valid_to: None,
            })
            .collect();
        f.rotations = Fact::Known(rs);
        f
    };
    // 20 rotations used: 5 left = the default minimum.
    let v = judge(rotated(20, 10));
    expect(&v, Compliance::Compliant, &["few rotations left (5 of 25)", "alias-swap"]);
    let v = judge(rotated(25, 400));
    expect(&v, Compliance::NonCompliant, &["few rotations left (0 of 25)"]);
    assert!(v.annotation.chars().count() <= MAX_ANNOTATION);
    // 19 used: 6 left, nothing said; the parameter moves the line.
    assert!(!judge(rotated(19, 10)).annotation.contains("few rotations"));
    let p = RuleParams { min_rotations_left: 6, ..RuleParams::default() };
    assert!(judge_with(rotated(19, 10), &p).annotation.contains("few rotations left (6 of 25)"));
    let p = RuleParams { min_rotations_left: 0, ..RuleParams::default() };
    assert!(!judge_with(rotated(20, 10), &p).annotation.contains("few rotations"));
    // The first import has no date: it spends no on-demand rotation.
    let mut first = external(Some(&date(10)));
    first.rotations = Fact::Known(vec![Rotation {
        date: None,
        material_id: Some("m0".into()),
        material_state: Some("CURRENT".into()),
        expiration_model: None,
        valid_to: None,
    }]);
    assert_eq!(on_demand_rotations_left(&first), Some(25));
    // Unknown history, or material KMS generates: nothing is said.
    let mut unread = external(Some(&date(10)));
    unread.rotations = Fact::NotRead;
    assert_eq!(on_demand_rotations_left(&unread), None);
    assert_eq!(on_demand_rotations_left(&KeyFacts::new(ID, "111122223333", "AWS_KMS")), None);
    // A long annotation keeps the note whole.
    let mut long = rotated(22, 400);
    long.tags = Fact::Known(BTreeMap::from([("LastRotationDate".to_string(), "x".repeat(200))]));
    let v = judge(long);
    assert!(
        v.annotation.ends_with("plan an alias-swap or a new key") && v.annotation.chars().count() <= MAX_ANNOTATION,
        "{}",
        v.annotation
    );
}
