use super::*;

fn workload() -> Requester {
    Requester::Workload { account: "111122223333".into() }
}

fn asking(params: &str) -> Ask {
    Ask { rule_parameters: Some(params.into()), ..Ask::default() }
}

#[test]
fn a_workload_only_asks_to_judge_and_rotate() {
    let p = SecurityPolicy { allow_alias_swap: true, ..SecurityPolicy::default() };
    let ok = admit(&p, &workload(), &Ask::default()).unwrap();
    assert_eq!(ok.params, p.rule_params());
    assert_eq!(ok.strategy, Strategy::InPlace);
    for (ask, says) in [
        (Ask { reimport: true, ..Ask::default() }, "re-import is the operator's"),
        (Ask { strategy: Some(Strategy::AliasSwap), ..Ask::default() }, "strategy alias-swap differs"),
    ] {
        let e = admit(&p, &workload(), &ask).unwrap_err();
        assert!(e.0.contains(says) && e.0.contains("workload account 111122223333"), "{ask:?}: {e}");
    }
    // The same asks from an operator.
    assert!(admit(&p, &Requester::Operator, &Ask { reimport: true, ..Ask::default() }).is_ok());
    let swap = Ask { strategy: Some(Strategy::AliasSwap), ..Ask::default() };
    assert_eq!(admit(&p, &Requester::Operator, &swap).unwrap().strategy, Strategy::AliasSwap);
    let closed = SecurityPolicy::default();
    assert!(admit(&closed, &Requester::Operator, &swap).unwrap_err().0.contains("KRG_ALLOW_ALIAS_SWAP"));
    // Naming the policy's own strategy is not a refusal.
    let same = Ask { strategy: Some(Strategy::InPlace), ..Ask::default() };
    assert!(admit(&p, &workload(), &same).is_ok());
}

#[test]
fn a_request_may_be_stricter_but_never_below_the_floor() {
    let p = SecurityPolicy::default(); // 365 − 30 = due at 335, floor 90
    assert_eq!(p.due_days(), 335);
    // Stricter, above the floor: due at the asked age.
    let ok = admit(&p, &workload(), &asking(r#"{"maxKeyAgeDays":"180"}"#)).unwrap();
    assert_eq!(ok.params.max_key_age_days - ok.params.expiry_warning_days, 150);
    assert_eq!(ok.params.expiry_warning_days, 30, "the expiry window stays the policy's");
    // Exactly the floor is allowed; one day below is not.
    let at = admit(&p, &workload(), &asking(r#"{"maxKeyAgeDays":"120","expiryWarningDays":"30"}"#)).unwrap();
    assert_eq!(at.params.max_key_age_days - at.params.expiry_warning_days, 90);
    for below in [
        r#"{"maxKeyAgeDays":"1"}"#,
        r#"{"maxKeyAgeDays":"119"}"#,
        r#"{"maxKeyAgeDays":"365","expiryWarningDays":"300"}"#,
        r#"{"maxKeyAgeDays":1}"#,
    ] {
        let e = admit(&p, &workload(), &asking(below)).unwrap_err();
        assert!(e.0.contains("MinRotationIntervalDays 90"), "{below}: {e}");
    }
    // The operator is held to the floor too (forcing is the CLI's).
    assert!(admit(&p, &Requester::Operator, &asking(r#"{"maxKeyAgeDays":"1"}"#)).is_err());
    // Looser: the policy's threshold, noted.
    let loose = admit(&p, &workload(), &asking(r#"{"maxKeyAgeDays":"3650"}"#)).unwrap();
    assert_eq!(loose.params, p.rule_params());
    assert!(loose.notes[0].contains("looser"), "{:?}", loose.notes);
    // The workload rule's own parameters, equal to the policy: nothing to note.
    let same = admit(
        &p,
        &workload(),
        &asking(r#"{"maxKeyAgeDays":"365","rotationTagKey":"LastRotationDate","keyReaderRoleName":"x","verifyTagAgainstKms":"false"}"#),
    )
    .unwrap();
    assert_eq!(same.params, p.rule_params(), "keyReaderRoleName and verifyTagAgainstKms are the policy's");
    assert!(same.notes.is_empty());
    for bad in [r#"{"maxKeyAgeDays":"soon"}"#, r#"[1]"#, "{", r#"{"expiryWarningDays":"-1"}"#] {
        assert!(admit(&p, &workload(), &asking(bad)).is_err(), "{bad}");
    }
}

#[test]
fn a_foreign_rotation_tag_is_refused() {
    let p = SecurityPolicy::default();
    let e = admit(&p, &workload(), &asking(r#"{"rotationTagKey":"DataClassification"}"#)).unwrap_err();
    assert!(e.0.contains("rotationTagKey \"DataClassification\""), "{e}");
    let e = admit(&p, &Requester::Operator, &asking(r#"{"rotationTagKey":"Owner"}"#)).unwrap_err();
    assert!(e.0.contains("Owner"), "{e}");
}

#[test]
fn the_policy_comes_from_the_environment_and_must_agree_with_itself() {
    let env = |pairs: &[(&str, &str)]| {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SecurityPolicy::from_lookup(move |n| m.get(n).cloned())
    };
    assert_eq!(env(&[]).unwrap(), SecurityPolicy::default());
    let p = env(&[
        ("KRG_MAX_KEY_AGE_DAYS", "180"),
        ("KRG_EXPIRY_WARNING_DAYS", "10"),
        ("KRG_ROTATION_TAG_KEY", "Rotated"),
        ("KRG_MIN_ROTATIONS_LEFT", "3"),
        ("KRG_MIN_ROTATION_INTERVAL_DAYS", "170"),
        ("KRG_VERIFY_TAG_AGAINST_KMS", "false"),
    ])
    .unwrap();
    assert_eq!((p.due_days(), p.min_rotations_left, p.rotation_tag_key.as_str()), (170, 3, "Rotated"));
    for (bad, says) in [
        (vec![("KRG_MIN_ROTATION_INTERVAL_DAYS", "400")], "above the policy's own due age"),
        (vec![("KRG_MAX_KEY_AGE_DAYS", "0")], "KRG_MAX_KEY_AGE_DAYS"),
        (vec![("KRG_MIN_ROTATIONS_LEFT", "26")], "KRG_MIN_ROTATIONS_LEFT"),
        (vec![("KRG_STRATEGY", "sideways")], "KRG_STRATEGY"),
        (vec![("KRG_STRATEGY", "alias-swap")], "KRG_ALLOW_ALIAS_SWAP"),
        (vec![("KRG_VERIFY_TAG_AGAINST_KMS", "yes")], "KRG_VERIFY_TAG_AGAINST_KMS"),
    ] {
        let e = env(&bad).unwrap_err();
        assert!(e.contains(says), "{bad:?}: {e}");
    }
}

#[test]
fn few_rotations_left_stops_automatic_rotation() {
    assert_eq!(quota_check("k", Some(0), 5), None);
    assert_eq!(quota_check("k", Some(19), 5), None, "6 left");
    let at = quota_check("k", Some(20), 5).unwrap();
    assert!(at.contains("few rotations left (5 of 25"), "{at}");
    assert!(quota_check("k", Some(25), 0).unwrap().contains("0 of 25"));
    assert_eq!(quota_check("k", Some(24), 0), None, "minRotationsLeft 0 spends the last one");
    assert_eq!(quota_check("k", None, 5), None, "unknown: the plan still stops at 0");
}
