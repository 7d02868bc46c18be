//! Rotation dates, and KMS dates far from now.

use super::*;

/// 1970-01-01 to 9999-12-31 (what a four-digit year can say).
pub(crate) fn arb_instant() -> BoxedStrategy<DateTime<Utc>> {
    (0i64..=253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap()).boxed()
}

pub(crate) fn arb_offset() -> impl Strategy<Value = FixedOffset> {
    (-(23 * 3600 + 59 * 60)..=(23 * 3600 + 59 * 60)).prop_map(|s: i32| FixedOffset::east_opt(s / 60 * 60).unwrap())
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn parse_rotation_date_never_panics(s in prop_oneof![
        any::<String>(),
        "[0-9+\\-:TZtz. ]{0,40}",
        "[+-]?[0-9]{1,7}-[0-9]{1,3}-[0-9]{1,3}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
    ]) {
        let _ = verdict::parse_rotation_date(&s);
    }

    #[test]
    fn dates_round_trip(y in 1970i32..=9999, doy in 1u32..=366, pad in "[ \t]{0,2}") {
        let Some(d) = NaiveDate::from_yo_opt(y, doy) else { return Ok(()) };
        let text = d.format("%Y-%m-%d").to_string();
        prop_assert_eq!(text.len(), 10);
        let got = verdict::parse_rotation_date(&format!("{pad}{text}{pad}"));
        prop_assert_eq!(got, Some(d.and_hms_opt(0, 0, 0).unwrap().and_utc()));
    }

    #[test]
    fn rfc3339_round_trips_with_any_offset(t in arb_instant(), off in arb_offset(), secs in 0usize..4, z in any::<bool>()) {
        let local = t.with_timezone(&off);
        // Keep it inside four-digit years in its own offset too.
        prop_assume!((1970..=9999).contains(&chrono::Datelike::year(&local)));
        let format = [SecondsFormat::Secs, SecondsFormat::Millis, SecondsFormat::Micros, SecondsFormat::Nanos][secs];
        let text = if z && off.local_minus_utc() == 0 { t.to_rfc3339_opts(format, true) } else { local.to_rfc3339_opts(format, false) };
        let got = verdict::parse_rotation_date(&text).unwrap_or_else(|| panic!("{text} did not parse"));
        let want = match format {
            SecondsFormat::Secs => DateTime::from_timestamp(t.timestamp(), 0).unwrap(),
            SecondsFormat::Millis => DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap(),
            SecondsFormat::Micros => DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap(),
            _ => t,
        };
        prop_assert_eq!(got, want, "{}", text);
    }

    #[test]
    fn fit_annotation_is_always_1_to_256_characters(s in prop_oneof![any::<String>(), prop::collection::vec(any::<char>(), 200..2000).prop_map(String::from_iter)]) {
        let a = verdict::fit_annotation(&s);
        let n = a.chars().count();
        prop_assert!((1..=MAX_ANNOTATION).contains(&n), "{} characters", n);
    }
}

/// One key whose every KMS date (creation, rotation, expiry) is `t`, tagged `tag`.
fn key_dated(t: DateTime<Utc>, tag: &str, p: &RuleParams) -> KeyLookup {
    let mut f = KeyFacts::new("1234abcd-12ab-34cd-56ef-1234567890ab", "111122223333", "EXTERNAL");
    f.created = Some(t);
    f.valid_to = Some(t);
    f.expiration_model = Some("KEY_MATERIAL_EXPIRES".into());
    f.tags = Fact::Known([(p.rotation_tag_key.clone(), tag.to_string())].into());
    f.rotations = Fact::Known(vec![Rotation {
        date: Some(t),
        material_id: None,
        material_state: Some("CURRENT".into()),
        expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
        valid_to: Some(t),
    }]);
    KeyLookup::Found(Box::new(f))
}

fn extreme_params() -> [RuleParams; 2] {
    [
        RuleParams::default(),
        RuleParams { max_key_age_days: 36_500, expiry_warning_days: 36_500, ..RuleParams::default() },
    ]
}

/// Dates far from now (year 1 BCE-ish to 9999, and chrono's minimum) reach the verdict
/// only from a broken endpoint; they still give a bounded annotation and no panic.
#[test]
fn far_away_kms_dates_do_not_panic_the_verdict() {
    let extremes = [
        DateTime::<Utc>::MIN_UTC,
        Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        // The largest date an SDK timestamp can carry that is a day away from chrono's end.
        DateTime::<Utc>::MAX_UTC - Duration::days(2),
    ];
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let key = Protection::Kms(KeyRef::parse("alias/prod").unwrap());
    for p in extreme_params() {
        for &t in &extremes {
            for tag in ["0001-01-01", "9999-12-31", "2026-11-22", "2026-11-22T23:59:59-23:59"] {
                let v = decide(&key, Some(&key_dated(t, tag, &p)), &p, now);
                assert!((1..=MAX_ANNOTATION).contains(&v.annotation.chars().count()), "{t} {tag}: {v:?}");
            }
        }
    }
}

/// Regression test, once a bug (src/verdict.rs, judge_key, the verifyTagAgainstKms check `rotated > newest +
/// TOLERANCE`): when KMS reports a creation or rotation date within a day of chrono's
/// maximum (year 262143; `aws::to_chrono` accepts any SDK timestamp chrono can hold), the
/// addition overflows and `decide` panics ("`DateTime + TimeDelta` overflowed"); with the
/// release profile's `panic = "abort"` the Lambda process dies without logging the cause.
/// No false verdict results (the invocation fails), so this is robustness only. Expected:
/// no panic (e.g. `newest.checked_add_signed(TOLERANCE)`, or treat such a date as
#[test]
fn kms_dates_near_chronos_maximum_do_not_panic() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let key = Protection::Kms(KeyRef::parse("alias/prod").unwrap());
    let p = RuleParams::default();
    let got = std::panic::catch_unwind(|| {
        decide(&key, Some(&key_dated(DateTime::<Utc>::MAX_UTC, "2026-11-22", &p)), &p, now)
    });
    assert!(got.is_ok(), "decide panicked on a KMS creation date of {}", DateTime::<Utc>::MAX_UTC);
}
