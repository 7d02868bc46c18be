//! Rule parameters.

use super::*;

/// Values that are valid for each parameter, so only the one under test can fail.
fn arb_valid_param() -> impl Strategy<Value = (&'static str, Value)> {
    prop_oneof![
        (1i64..=36_500).prop_map(|n| ("maxKeyAgeDays", Value::String(n.to_string()))),
        (1i64..=36_500).prop_map(|n| ("maxKeyAgeDays", json!(n))),
        (0i64..=36_500).prop_map(|n| ("expiryWarningDays", Value::String(format!(" {n} ")))),
        "[A-Za-z0-9:/_-]{1,128}".prop_map(|s| ("rotationTagKey", Value::String(s))),
        "[A-Za-z0-9+=,.@_-]{0,64}".prop_map(|s| ("keyReaderRoleName", Value::String(s))),
        any::<bool>().prop_map(|b| ("allowAwsManagedKeys", Value::String(b.to_string().to_uppercase()))),
        any::<bool>().prop_map(|b| ("verifyTagAgainstKms", Value::Bool(b))),
    ]
}

fn arb_days_value(range: impl Strategy<Value = i64> + Clone + 'static) -> impl Strategy<Value = Value> {
    prop_oneof![
        range.clone().prop_map(|n| json!(n)),
        range.clone().prop_map(|n| Value::String(n.to_string())),
        range.prop_map(|n| Value::String(format!("  {n}\t"))),
    ]
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn rule_params_parse_never_panics_on_arbitrary_strings(s in prop_oneof![any::<String>(), "\\{.{0,60}\\}", "\\PC{0,60}"]) {
        if let Err(e) = RuleParams::parse(Some(&s)) {
            prop_assert!(!e.to_string().trim().is_empty());
        }
    }

    #[test]
    fn rule_params_parse_never_panics_on_arbitrary_objects(
        m in prop::collection::btree_map(
            prop_oneof![3 => proptest::sample::select(PARAMETER_NAMES.to_vec()).prop_map(str::to_string), 1 => arb_string()],
            arb_json(),
            0..6,
        ),
    ) {
        let text = Value::Object(m.into_iter().collect()).to_string();
        match RuleParams::parse(Some(&text)) {
            Ok(p) => {
                prop_assert!((1..=36_500).contains(&p.max_key_age_days));
                prop_assert!((0..=36_500).contains(&p.expiry_warning_days));
                prop_assert!(!p.rotation_tag_key.is_empty() && p.rotation_tag_key.chars().count() <= 128);
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
        }
    }

    #[test]
    fn out_of_range_days_are_errors_naming_the_parameter(
        (name, bad) in prop_oneof![
            arb_days_value(prop_oneof![i64::MIN..=0, 36_501i64..=i64::MAX]).prop_map(|v| ("maxKeyAgeDays", v)),
            arb_days_value(prop_oneof![i64::MIN..=-1, 36_501i64..=i64::MAX]).prop_map(|v| ("expiryWarningDays", v)),
            Just(("maxKeyAgeDays", json!(u64::MAX))),
            Just(("maxKeyAgeDays", json!(0.0))),
            Just(("expiryWarningDays", json!(-0.5))),
        ],
        others in prop::collection::vec(arb_valid_param(), 0..4),
    ) {
        let mut obj = serde_json::Map::new();
        for (k, v) in others {
            obj.insert(k.to_string(), v);
        }
        obj.insert(name.to_string(), bad.clone());
        let text = Value::Object(obj).to_string();
        match RuleParams::parse(Some(&text)) {
            Ok(p) => prop_assert!(false, "{text} was accepted: {p:?}"),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(name), "{text}: {msg}");
                prop_assert!(matches!(e, kms_rotation_guard::Error::InvalidParameter { .. }), "{msg}");
            }
        }
    }

    #[test]
    fn valid_parameters_are_accepted(others in prop::collection::vec(arb_valid_param(), 0..7)) {
        let obj: serde_json::Map<String, Value> = others.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let text = Value::Object(obj).to_string();
        prop_assert!(RuleParams::parse(Some(&text)).is_ok(), "{}", text);
    }
}
