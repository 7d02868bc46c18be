//! The verdict: never COMPLIANT without evidence, a bounded annotation, no panic.

use super::*;
use crate::dates::{arb_instant, arb_offset};
use crate::key_refs::{arb_key_id, arb_key_ref, ACCOUNT};

const STATES: &[&str] = &[
    "Creating",
    "Enabled",
    "Disabled",
    "PendingDeletion",
    "PendingImport",
    "PendingReplicaDeletion",
    "Unavailable",
    "Updating",
];
const ORIGINS: &[&str] = &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

/// Realistic "now": 2020 to 2040.
fn arb_now() -> impl Strategy<Value = DateTime<Utc>> {
    (1_577_836_800i64..2_208_988_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

/// Short, long, non-ASCII, control characters.
fn arb_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        1 => "\\PC{0,20}",
        1 => prop::collection::vec(any::<char>(), 250..1500).prop_map(String::from_iter),
        1 => "[日本語éü€\u{1F600}\u{202E}\u{0}\"\\\\ ]{100,400}",
    ]
    .boxed()
}

/// A tag value: a date in one of the accepted forms (near `now` or anywhere), or junk.
fn arb_tag_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => arb_instant().prop_map(|t| t.format("%Y-%m-%d").to_string()),
        2 => (arb_instant(), arb_offset()).prop_map(|(t, o)| t.with_timezone(&o).to_rfc3339()),
        2 => (-40_000i64..400).prop_map(|d| (Utc::now() + Duration::days(d)).format("%Y-%m-%d").to_string()),
        2 => arb_text(),
    ]
    .boxed()
}

fn arb_denial() -> BoxedStrategy<Denial> {
    (prop_oneof![Just("kms:ListResourceTags".to_string()), arb_text()], arb_text())
        .prop_map(|(action, hint)| Denial { action, hint })
        .boxed()
}

fn arb_fact<T: std::fmt::Debug + Clone + 'static>(
    known: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Fact<T>> {
    prop_oneof![
        6 => known.prop_map(Fact::Known),
        1 => arb_denial().prop_map(Fact::Denied),
        1 => arb_text().prop_map(Fact::Unsupported),
        1 => arb_text().prop_map(Fact::NotForThisKey),
        1 => Just(Fact::NotRead),
    ]
}

fn arb_tags(tag_key: String, now: DateTime<Utc>) -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys = prop_oneof![
        3 => Just(tag_key.clone()),
        2 => Just(MATERIAL_ID_TAG.to_string()),
        1 => Just("LastRotationDate".to_string()),
        1 => arb_text(),
    ];
    let values = prop_oneof![3 => arb_tag_value(), 1 => "material-[0-9]{1,2}"];
    // Usually a plausible rotation date near now, in one of the accepted forms.
    let recent = proptest::option::weighted(
        0.7,
        (-(2 * 86_400)..(500 * 86_400i64), any::<u8>(), arb_offset())
            .prop_map(move |(age, form, off)| tag_text(now, age, form, off)),
    );
    (prop::collection::btree_map(keys, values, 0..6), recent).prop_map(move |(mut m, recent)| {
        if let Some(r) = recent {
            m.insert(tag_key.clone(), r);
        }
        m
    })
}

fn arb_rotation() -> BoxedStrategy<Rotation> {
    (
        proptest::option::of(arb_instant()),
        proptest::option::of(prop_oneof!["material-[0-9]{1,2}", arb_text()]),
        proptest::option::of(prop_oneof![
            Just("CURRENT".to_string()),
            Just("NON_CURRENT".to_string()),
            Just("PENDING_ROTATION".to_string()),
            arb_text()
        ]),
        proptest::option::of(prop_oneof![
            Just("KEY_MATERIAL_EXPIRES".to_string()),
            Just("KEY_MATERIAL_DOES_NOT_EXPIRE".to_string())
        ]),
        proptest::option::of(arb_instant()),
    )
        .prop_map(|(date, material_id, material_state, expiration_model, valid_to)| Rotation {
            date,
            material_id,
            material_state,
            expiration_model,
            valid_to,
        })
        .boxed()
}

fn arb_params() -> BoxedStrategy<RuleParams> {
    (
        1i64..=36_500,
        prop_oneof![3 => Just("LastRotationDate".to_string()), 1 => "\\PC{1,128}"],
        any::<bool>(),
        any::<bool>(),
        0i64..=36_500,
    )
        .prop_map(|(max, tag, allow, verify, expiry)| RuleParams {
            max_key_age_days: max,
            rotation_tag_key: tag,
            key_reader_role_name: None,
            allow_aws_managed_keys: allow,
            verify_tag_against_kms: verify,
            expiry_warning_days: expiry,
            execution_role_name: None,
            ..RuleParams::default()
        })
        .boxed()
}

fn arb_facts(tag_key: String, now: DateTime<Utc>) -> BoxedStrategy<KeyFacts> {
    (
        (
            arb_key_id(),
            ACCOUNT,
            proptest::sample::select(ORIGINS),
            prop_oneof![
                6 => Just("Enabled".to_string()),
                3 => proptest::sample::select(STATES).prop_map(str::to_string),
                1 => arb_text()
            ],
            prop::bool::weighted(0.1),
            proptest::option::of(arb_instant()),
        ),
        (
            proptest::option::weighted(
                0.3,
                prop_oneof![Just("KEY_MATERIAL_EXPIRES".to_string()), Just("KEY_MATERIAL_DOES_NOT_EXPIRE".to_string())],
            ),
            proptest::option::of(prop_oneof![
                arb_instant(),
                (-100i64..3000).prop_map(move |d| now + Duration::days(d))
            ]),
            proptest::option::of(prop_oneof!["material-[0-9]{1,2}", arb_text()]),
            arb_fact(arb_tags(tag_key, now)),
            arb_fact(prop::collection::vec(arb_rotation(), 0..4)),
            arb_fact(
                (any::<bool>(), proptest::option::of(prop_oneof![90i64..=2560, any::<i64>()]))
                    .prop_map(|(enabled, period_days)| AutoRotation { enabled, period_days, next_rotation: None }),
            ),
        ),
    )
        .prop_map(
            |(
                (id, account, origin, state, aws_managed, created),
                (expiration_model, valid_to, current_material_id, tags, rotations, auto_rotation),
            )| {
                let mut f = KeyFacts::new(&id, &account, origin);
                f.state = state;
                f.manager = if aws_managed { KeyManager::Aws } else { KeyManager::Customer };
                f.created = created;
                f.expiration_model = expiration_model;
                f.valid_to = valid_to;
                f.current_material_id = current_material_id;
                f.tags = tags;
                f.rotations = rotations;
                f.auto_rotation = auto_rotation;
                f
            },
        )
        .boxed()
}

fn arb_protection() -> BoxedStrategy<Protection> {
    prop_oneof![
        12 => arb_key_ref().prop_map(Protection::Kms),
        1 => arb_text().prop_map(Protection::Unencrypted),
        1 => Just(Protection::S3Managed),
        1 => Just(Protection::AwsOwnedKey),
        1 => Just(Protection::S3ManagedByDefault),
        1 => arb_denial().prop_map(Protection::Unreadable),
    ]
    .boxed()
}

/// Params, then a key whose tags use the params' tag key.
fn arb_case() -> impl Strategy<Value = (Protection, Option<KeyLookup>, RuleParams, DateTime<Utc>)> {
    (arb_params(), arb_now()).prop_flat_map(|(p, now)| {
        let lookup = proptest::option::weighted(
            0.95,
            prop_oneof![
                8 => arb_facts(p.rotation_tag_key.clone(), now).prop_map(|f| KeyLookup::Found(Box::new(f))),
                1 => Just(KeyLookup::NotFound),
                1 => arb_denial().prop_map(KeyLookup::Denied),
                1 => Just(KeyLookup::AwsManagedAlias),
            ],
        );
        (arb_protection(), lookup, Just(p), Just(now))
    })
}

/// What a COMPLIANT verdict needs to stand on: docs/rules.md's checks, restated.
fn compliant_has_evidence(
    prot: &Protection,
    lookup: Option<&KeyLookup>,
    p: &RuleParams,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let Protection::Kms(key) = prot else { return Err("COMPLIANT without a KMS key".into()) };
    let aws_managed = key.is_aws_managed_alias()
        || matches!(lookup, Some(KeyLookup::AwsManagedAlias))
        || matches!(lookup, Some(KeyLookup::Found(f)) if f.manager == KeyManager::Aws);
    if aws_managed {
        return if p.allow_aws_managed_keys { Ok(()) } else { Err("AWS-managed key accepted".into()) };
    }
    let Some(KeyLookup::Found(f)) = lookup else { return Err(format!("COMPLIANT with lookup {lookup:?}")) };
    if f.state != "Enabled" {
        return Err(format!("COMPLIANT in state {}", f.state));
    }
    // KMS generated the material: its age (newest rotation, else creation) is the evidence.
    if f.origin == "AWS_KMS" && matches!(f.rotations, Fact::Known(_)) {
        let Some(m) = f.newest_material_date() else { return Err("COMPLIANT without a material date".into()) };
        return if (now - m).num_days() > p.max_key_age_days {
            Err("COMPLIANT though the generated material is older than the limit".into())
        } else {
            Ok(())
        };
    }
    if f.origin == "AWS_KMS" && matches!(f.rotations, Fact::Denied(_)) {
        return Err("COMPLIANT though the age of generated material is unknown".into());
    }
    let Fact::Known(tags) = &f.tags else { return Err("COMPLIANT without reading the tags".into()) };
    let Some(rotated) = tags.get(&p.rotation_tag_key).and_then(|t| verdict::parse_rotation_date(t)) else {
        return Err("COMPLIANT without a rotation date".into());
    };
    if rotated > now + Duration::days(1) {
        return Err("COMPLIANT with a future tag".into());
    }
    if (now - rotated).num_days() > p.max_key_age_days {
        return Err("COMPLIANT though older than the limit".into());
    }
    if p.verify_tag_against_kms {
        if matches!(f.rotations, Fact::Denied(_)) {
            return Err("COMPLIANT though the rotation history was denied".into());
        }
        if let Some(n) = f.newest_material_date() {
            if rotated > n + Duration::days(1) {
                return Err("COMPLIANT though the tag is newer than KMS's newest material".into());
            }
        }
        if let (Some(c), Some(cur)) = (tags.get(MATERIAL_ID_TAG), &f.current_material_id) {
            if c != cur {
                return Err("COMPLIANT though the material id tag disagrees with KMS".into());
            }
        }
    }
    let (model, valid_to) = f.expiry();
    if model == Some("KEY_MATERIAL_EXPIRES")
        && valid_to.is_none_or(|v| v - now <= Duration::days(p.expiry_warning_days))
    {
        return Err("COMPLIANT though the material expires soon (or at an unknown date)".into());
    }
    Ok(())
}

fn with_tag(lookup: &KeyLookup, key: &str, value: &str) -> KeyLookup {
    let mut l = lookup.clone();
    if let KeyLookup::Found(f) = &mut l {
        if let Fact::Known(t) = &mut f.tags {
            t.insert(key.to_string(), value.to_string());
        }
    }
    l
}

/// A tag date `age` seconds before `now`, written in one of the accepted forms.
fn tag_text(now: DateTime<Utc>, age_secs: i64, form: u8, off: FixedOffset) -> String {
    let t = now - Duration::seconds(age_secs);
    match form % 3 {
        0 => t.format("%Y-%m-%d").to_string(),
        1 => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        _ => t.with_timezone(&off).to_rfc3339(),
    }
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn every_verdict_has_a_1_to_256_character_annotation((prot, lookup, p, now) in arb_case()) {
        let v = decide(&prot, lookup.as_ref(), &p, now);
        let n = v.annotation.chars().count();
        prop_assert!((1..=MAX_ANNOTATION).contains(&n), "{} characters: {:?}", n, v.annotation);
        prop_assert!(!v.annotation.trim().is_empty());
        if v.compliance == Compliance::Compliant {
            if let Err(why) = compliant_has_evidence(&prot, lookup.as_ref(), &p, now) {
                prop_assert!(false, "{why}: {:?} for {prot:?} {lookup:?} {p:?} at {now}", v.annotation);
            }
        }
        // decide is pure: the same inputs give the same verdict.
        prop_assert_eq!(decide(&prot, lookup.as_ref(), &p, now), v);
    }

    /// Moving the rotation tag earlier never turns NON_COMPLIANT into COMPLIANT, for tag
    /// dates up to now. With verifyTagAgainstKms, a tag newer than KMS's newest key
    /// material is a finding of its own (the tag claims a rotation KMS never saw), so an
    /// older, truthful tag may legitimately be COMPLIANT: the property holds among tags
    /// that pass that cross-check, and for every tag ≤ now without it.
    #[test]
    fn the_verdict_is_monotone_in_age(
        (key, lookup, p, now) in (arb_params(), arb_now()).prop_flat_map(|(p, now)| {
            let lookup = arb_facts(p.rotation_tag_key.clone(), now).prop_map(|f| KeyLookup::Found(Box::new(f)));
            (arb_key_ref().prop_filter("customer key", |k| !k.is_aws_managed_alias()), lookup, Just(p), Just(now))
        }),
        newer_age in prop_oneof![0i64..(800 * 86_400), 0i64..(40_000 * 86_400)],
        extra_age in prop_oneof![0i64..(3 * 86_400), 0i64..(800 * 86_400), 0i64..(40_000 * 86_400)],
        forms in (any::<u8>(), any::<u8>()),
        offs in (arb_offset(), arb_offset()),
    ) {
        let newer = tag_text(now, newer_age, forms.0, offs.0);
        let older = tag_text(now, newer_age + extra_age, forms.1, offs.1);
        let (r_new, r_old) = (verdict::parse_rotation_date(&newer).unwrap(), verdict::parse_rotation_date(&older).unwrap());
        // Writing a date without its time moves it to midnight: compare what the rule reads.
        let (newer, older, r_new) = if r_old <= r_new { (newer, older, r_new) } else { (older, newer, r_old) };
        prop_assert!(r_new <= now);
        let mut lookup = lookup;
        if p.verify_tag_against_kms {
            if let KeyLookup::Found(f) = &mut lookup {
                if f.newest_material_date().is_some_and(|n| r_new > n + Duration::days(1)) {
                    // Make KMS know material at least as new as the newer tag.
                    if let Fact::Known(rs) = &mut f.rotations {
                        rs.push(Rotation { date: Some(now), material_id: None, material_state: None, expiration_model: None, valid_to: None });
                    }
                }
            }
        }
        let prot = Protection::Kms(key);
        let tag = &p.rotation_tag_key;
        let v_new = decide(&prot, Some(&with_tag(&lookup, tag, &newer)), &p, now);
        let v_old = decide(&prot, Some(&with_tag(&lookup, tag, &older)), &p, now);
        prop_assert!(
            !(v_new.compliance == Compliance::NonCompliant && v_old.compliance == Compliance::Compliant),
            "tag {newer} → {:?}, older tag {older} → {:?}", v_new, v_old
        );
    }
}
