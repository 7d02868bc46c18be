//! Property tests of the pure parts: event parsing, configuration items, key references,
//! rotation dates, rule parameters and the verdict. No network; the whole file runs in
//! seconds. Failures are not persisted to disk (the seed is printed instead).

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, SecondsFormat, TimeZone, Utc};
use common::json::{arb_json, arb_string};
use kms_rotation_guard::event;
use kms_rotation_guard::key::{AutoRotation, Denial, Fact, Home, KeyFacts, KeyLookup, KeyManager, KeyRef, Rotation};
use kms_rotation_guard::params::{RuleParams, MATERIAL_ID_TAG, PARAMETER_NAMES};
use kms_rotation_guard::resource::{self, Protection, ResourceType};
use kms_rotation_guard::verdict::{self, decide, Compliance, MAX_ANNOTATION};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

fn cfg(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------------------------------
// JSON values and the real sample events
// ---------------------------------------------------------------------------------------

/// Every sample event, with its nested JSON strings (invokingEvent, the S3 encryption
/// configuration) parsed in place so mutations can reach inside them.
fn samples() -> &'static [(String, Value)] {
    static S: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        assert!(!files.is_empty());
        files
            .into_iter()
            .map(|p| {
                let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                expand(&mut v);
                (p.file_name().unwrap().to_string_lossy().into_owned(), v)
            })
            .collect()
    })
}

const SSE_PATH: [&str; 3] = ["configurationItem", "supplementaryConfiguration", "ServerSideEncryptionConfiguration"];

fn expand(event: &mut Value) {
    if let Some(Value::String(s)) = event.get("invokingEvent") {
        let mut inv: Value = serde_json::from_str(s).unwrap();
        if let Some(Value::String(sse)) = pointer(&inv, &SSE_PATH) {
            let parsed: Value = serde_json::from_str(sse).unwrap();
            *pointer_mut(&mut inv, &SSE_PATH).unwrap() = parsed;
        }
        event["invokingEvent"] = inv;
    }
}

/// Turns the nested values back into JSON strings, as Config sends them (or leaves them
/// as values, which the parser must refuse or accept without panicking).
fn collapse(mut event: Value, stringify_invoking: bool, stringify_sse: bool) -> Value {
    if let Some(inv) = event.get_mut("invokingEvent") {
        if stringify_sse {
            if let Some(sse) = pointer_mut(inv, &SSE_PATH) {
                *sse = Value::String(sse.to_string());
            }
        }
        if stringify_invoking {
            *inv = Value::String(inv.to_string());
        }
    }
    event
}

fn pointer<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(k))
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Every node below the root, depth first.
fn paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    here.push(Seg::Key(k.clone()));
                    out.push(here.clone());
                    walk(c, here, out);
                    here.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    here.push(Seg::Idx(i));
                    out.push(here.clone());
                    walk(c, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Idx(i) => v.get_mut(*i),
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace a node by a random value (usually of another type).
    Replace(Value),
    Delete,
    /// Replace a node by a string that is not JSON (or is JSON of the wrong shape).
    Garbage(String),
}

fn arb_mutation() -> impl Strategy<Value = (prop::sample::Index, Mutation)> {
    let m = prop_oneof![
        3 => arb_json().prop_map(Mutation::Replace),
        2 => Just(Mutation::Delete),
        1 => arb_string().prop_map(Mutation::Garbage),
    ];
    (any::<prop::sample::Index>(), m)
}

fn mutate(v: &mut Value, mutations: &[(prop::sample::Index, Mutation)]) {
    for (at, m) in mutations {
        let all = paths(v);
        if all.is_empty() {
            return;
        }
        let path = &all[at.index(all.len())];
        let (last, parent) = path.split_last().unwrap();
        match m {
            Mutation::Replace(x) => *node_mut(v, path).unwrap() = x.clone(),
            Mutation::Garbage(s) => *node_mut(v, path).unwrap() = Value::String(s.clone()),
            Mutation::Delete => match (node_mut(v, parent).unwrap(), last) {
                (Value::Object(o), Seg::Key(k)) => {
                    o.remove(k);
                }
                (Value::Array(a), Seg::Idx(i)) => {
                    a.remove(*i);
                }
                _ => unreachable!(),
            },
        }
    }
}

fn arb_mutated_event() -> impl Strategy<Value = Value> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(arb_mutation(), 1..4),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(which, muts, stringify_invoking, stringify_sse)| {
            let s = samples();
            let mut v = s[which.index(s.len())].1.clone();
            mutate(&mut v, &muts);
            collapse(v, stringify_invoking, stringify_sse)
        })
}

/// The configuration items of the change samples, mutated.
fn arb_mutated_item() -> impl Strategy<Value = Value> {
    (any::<prop::sample::Index>(), prop::collection::vec(arb_mutation(), 1..4), prop::bool::weighted(0.5)).prop_map(
        |(which, muts, stringify_sse)| {
            let items: Vec<&Value> =
                samples().iter().filter_map(|(_, e)| e["invokingEvent"].get("configurationItem")).collect();
            let mut item = items[which.index(items.len())].clone();
            mutate(&mut item, &muts);
            if stringify_sse {
                if let Some(sse) = pointer_mut(&mut item, &SSE_PATH[1..]) {
                    *sse = Value::String(sse.to_string());
                }
            }
            item
        },
    )
}

const RULE_TYPES: [&[ResourceType]; 4] = [
    &ResourceType::ALL,
    &[ResourceType::RdsDbInstance, ResourceType::RdsDbCluster],
    &[ResourceType::DynamoDbTable],
    &[ResourceType::S3Bucket],
];

/// Runs the pure pipeline on a payload: parse, then read the item. Errors must say
/// something.
fn parse_all_the_way(payload: Value) {
    match event::parse(payload) {
        Err(e) => assert!(!e.to_string().trim().is_empty()),
        Ok(inv) => {
            assert!(!inv.result_token.is_empty());
            if let event::Trigger::Change { item, .. } = &inv.trigger {
                for types in RULE_TYPES {
                    if let Err(e) = resource::from_configuration_item(item, types) {
                        assert!(!e.to_string().trim().is_empty());
                    }
                }
            }
            let _ = RuleParams::parse(inv.rule_parameters());
        }
    }
}

#[test]
fn the_unmutated_samples_round_trip_through_expand_and_collapse() {
    for (name, v) in samples() {
        let back = collapse(v.clone(), true, true);
        let inv = event::parse(back).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(inv.result_token, "TESTMODE", "{name}");
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn event_parse_never_panics_on_arbitrary_json(v in arb_json()) {
        parse_all_the_way(v);
    }

    #[test]
    fn event_parse_never_panics_on_envelopes_with_arbitrary_invoking_events(
        inv in arb_json(),
        token in proptest::option::of(arb_string()),
        params in proptest::option::of(arb_json()),
        left in proptest::option::of(arb_json()),
    ) {
        let mut e = json!({ "invokingEvent": inv.to_string(), "accountId": "123456789012" });
        if let Some(t) = token { e["resultToken"] = Value::String(t); }
        if let Some(p) = params { e["ruleParameters"] = Value::String(p.to_string()); }
        if let Some(l) = left { e["eventLeftScope"] = l; }
        parse_all_the_way(e);
    }

    #[test]
    fn event_parse_never_panics_on_mutated_sample_events(v in arb_mutated_event()) {
        parse_all_the_way(v.clone());
        // The same through the byte entry point.
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(inv) = event::parse_bytes(&bytes) {
            prop_assert!(!inv.result_token.is_empty());
        }
    }

    #[test]
    fn parse_bytes_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(e) = event::parse_bytes(&bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn parse_bytes_never_panics_on_damaged_sample_files(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let s = samples();
        let mut bytes = serde_json::to_vec(&collapse(s[which.index(s.len())].1.clone(), true, true)).unwrap();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = event::parse_bytes(&bytes);
    }

    #[test]
    fn from_configuration_item_never_panics_on_arbitrary_items(item in arb_json()) {
        for types in RULE_TYPES {
            if let Err(e) = resource::from_configuration_item(&item, types) {
                prop_assert!(!e.to_string().trim().is_empty());
            }
        }
    }

    #[test]
    fn from_configuration_item_never_panics_on_mutated_sample_items(item in arb_mutated_item()) {
        for types in RULE_TYPES {
            if let Err(e) = resource::from_configuration_item(&item, types) {
                prop_assert!(!e.to_string().trim().is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Key references
// ---------------------------------------------------------------------------------------

const UUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
const MRK: &str = "mrk-[0-9a-fA-F]{32}";
const ALIAS_TAIL: &str = "[A-Za-z0-9/_-]{1,60}";
const ACCOUNT: &str = "[0-9]{12}";

fn arb_partition_region() -> impl Strategy<Value = (&'static str, &'static str)> {
    proptest::sample::select(vec![
        ("aws", "eu-west-1"),
        ("aws", "us-east-1"),
        ("aws", "ap-southeast-2"),
        ("aws-cn", "cn-north-1"),
        ("aws-cn", "cn-northwest-1"),
        ("aws-us-gov", "us-gov-west-1"),
        ("aws-us-gov", "us-gov-east-1"),
    ])
}

fn arb_key_id() -> impl Strategy<Value = String> {
    prop_oneof![UUID, MRK]
}

fn arb_alias_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ALIAS_TAIL.prop_map(|t| format!("alias/{t}")),
        1 => "[A-Za-z0-9_-]{1,20}".prop_map(|t| format!("alias/aws/{t}")),
        // The longest name KMS allows: 256 characters with the prefix.
        1 => "[A-Za-z0-9_-]{250}".prop_map(|t| format!("alias/{t}")),
    ]
}

/// Any valid reference, as written on a resource.
fn arb_key_ref_text() -> BoxedStrategy<String> {
    prop_oneof![
        arb_key_id(),
        arb_alias_name(),
        (arb_partition_region(), ACCOUNT, arb_key_id())
            .prop_map(|((p, r), a, id)| format!("arn:{p}:kms:{r}:{a}:key/{id}")),
        (arb_partition_region(), ACCOUNT, arb_alias_name())
            .prop_map(|((p, r), a, n)| format!("arn:{p}:kms:{r}:{a}:{n}")),
    ]
    .boxed()
}

fn arb_key_ref() -> BoxedStrategy<KeyRef> {
    arb_key_ref_text().prop_map(|s| KeyRef::parse(&s).unwrap()).boxed()
}

/// Texts that are certainly not references: a valid form with one part broken.
fn arb_garbage_ref() -> impl Strategy<Value = String> {
    let bad_char = proptest::sample::select(vec![' ', '.', ':', '!', '*', 'é', '€', '日', '\u{0}', '"', '\\', '+']);
    prop_oneof![
        Just(String::new()),
        "[ \t\n]{1,5}",
        (arb_partition_region(), "[0-9]{1,11}", arb_key_id())
            .prop_map(|((p, r), a, id)| format!("arn:{p}:kms:{r}:{a}:key/{id}")),
        (arb_partition_region(), "[0-9]{13,20}", arb_key_id())
            .prop_map(|((p, r), a, id)| format!("arn:{p}:kms:{r}:{a}:key/{id}")),
        (arb_partition_region(), "[0-9]{11}[a-z]", arb_key_id())
            .prop_map(|((p, r), a, id)| format!("arn:{p}:kms:{r}:{a}:key/{id}")),
        ("[a-z]{1,8}".prop_filter("not a partition", |p| !p.starts_with("aws")), ACCOUNT, arb_key_id())
            .prop_map(|(p, a, id)| format!("arn:{p}:kms:eu-west-1:{a}:key/{id}")),
        ("[a-z0-9]{1,10}".prop_filter("not kms", |s| s != "kms"), ACCOUNT, arb_key_id())
            .prop_map(|(s, a, id)| format!("arn:aws:{s}:eu-west-1:{a}:key/{id}")),
        ("[A-Z_]{1,12}", ACCOUNT).prop_map(|(r, a)| format!("arn:aws:kms:{r}:{a}:alias/x")),
        (ACCOUNT, "(grant|keys|aliases|Key|Alias)/[a-z0-9]{1,10}")
            .prop_map(|(a, res)| format!("arn:aws:kms:eu-west-1:{a}:{res}")),
        (ACCOUNT, "[0-9a-f]{1,31}").prop_map(|(a, id)| format!("arn:aws:kms:eu-west-1:{a}:key/{id}")),
        (ACCOUNT, "[0-9a-f]{1,31}").prop_map(|(a, id)| format!("arn:aws:kms:eu-west-1:{a}:key/mrk-{id}")),
        ACCOUNT.prop_map(|a| format!("arn:aws:kms:eu-west-1:{a}:alias/")),
        ACCOUNT.prop_map(|a| format!("arn:aws:kms:eu-west-1:{a}")),
        (ALIAS_TAIL, bad_char.clone(), ALIAS_TAIL).prop_map(|(x, c, y)| format!("alias/{x}{c}{y}")),
        "[A-Za-z0-9_-]{251,300}".prop_map(|t| format!("alias/{t}")),
        Just("alias/".to_string()),
        // A UUID with one group the wrong length.
        "[0-9a-f]{7}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{13}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{11}[g-z]",
        "mrk-[0-9a-f]{0,31}",
        "[0-9]{1,11}",
        prop::collection::vec(any::<char>(), 2049..2100).prop_map(|c| format!("alias/{}", String::from_iter(c))),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn key_ref_parse_never_panics_and_what_it_accepts_round_trips(s in prop_oneof![any::<String>(), "\\PC{0,80}", arb_key_ref_text()]) {
        match KeyRef::parse(&s) {
            Ok(k) => {
                let again = KeyRef::parse(&k.to_string()).expect("the Display of a reference parses");
                prop_assert_eq!(&again, &k);
                prop_assert!(!k.short().is_empty());
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty() && !e.reason.is_empty()),
        }
    }

    #[test]
    fn key_ids_parse_to_key_id(id in arb_key_id(), pad in "[ \t]{0,2}") {
        let k = KeyRef::parse(&format!("{pad}{id}{pad}")).unwrap();
        prop_assert_eq!(&k, &KeyRef::KeyId(id.clone()));
        prop_assert_eq!(k.account(), None);
        prop_assert_eq!(k.short(), id.as_str());
        prop_assert!(!k.is_aws_managed_alias());
    }

    #[test]
    fn alias_names_parse_to_alias_name(name in arb_alias_name()) {
        let k = KeyRef::parse(&name).unwrap();
        prop_assert_eq!(k.is_aws_managed_alias(), name.starts_with("alias/aws/"));
        prop_assert_eq!(&k, &KeyRef::AliasName(name));
    }

    #[test]
    fn key_arns_parse_to_key_arn_in_every_partition(
        (partition, region) in arb_partition_region(), account in ACCOUNT, id in arb_key_id(),
    ) {
        let text = format!("arn:{partition}:kms:{region}:{account}:key/{id}");
        let k = KeyRef::parse(&text).unwrap();
        match &k {
            KeyRef::KeyArn(a) => {
                prop_assert_eq!(&a.partition, partition);
                prop_assert_eq!(&a.region, region);
                prop_assert_eq!(&a.account, &account);
                prop_assert_eq!(&a.resource, &format!("key/{id}"));
            }
            other => prop_assert!(false, "{text} parsed as {other:?}"),
        }
        prop_assert_eq!(k.short(), id.as_str());
        prop_assert_eq!(k.account(), Some(account.as_str()));
        prop_assert_eq!(k.to_string(), text.clone());
        // The bare id in the same home names the same key.
        let home = Home::new(region, &account);
        prop_assert_eq!(&home.partition, partition);
        prop_assert_eq!(KeyRef::parse(&id).unwrap().qualified(&home), k.qualified(&home));
        prop_assert_eq!(k.qualified(&home), text);
    }

    #[test]
    fn alias_arns_parse_to_alias_arn_and_qualify_like_the_alias_name(
        (partition, region) in arb_partition_region(), account in ACCOUNT, name in arb_alias_name(),
        other_account in ACCOUNT,
    ) {
        let text = format!("arn:{partition}:kms:{region}:{account}:{name}");
        let k = KeyRef::parse(&text).unwrap();
        match &k {
            KeyRef::AliasArn(a) => {
                prop_assert_eq!(&a.partition, partition);
                prop_assert_eq!(&a.region, region);
                prop_assert_eq!(&a.account, &account);
                prop_assert_eq!(&a.resource, &name);
            }
            other => prop_assert!(false, "{text} parsed as {other:?}"),
        }
        prop_assert_eq!(k.short(), name.as_str());
        prop_assert_eq!(k.is_aws_managed_alias(), name.starts_with("alias/aws/"));
        let home = Home::new(region, &account);
        let by_name = KeyRef::parse(&name).unwrap();
        prop_assert_eq!(by_name.qualified(&home), k.qualified(&home));
        // An alias ARN names its own account whatever the resource's home is.
        prop_assert_eq!(k.qualified(&Home::new(region, &other_account)), text);
        let elsewhere = Home::new(region, &other_account);
        prop_assert_eq!(k.account_or(&elsewhere), account.as_str());
    }

    #[test]
    fn garbage_references_are_errors_with_a_reason(s in arb_garbage_ref()) {
        match KeyRef::parse(&s) {
            Ok(k) => prop_assert!(false, "{s:?} parsed as {k:?}"),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.trim().is_empty());
                prop_assert!(text.contains("not a KMS key reference"), "{}", text);
                prop_assert!(!e.reason.is_empty());
                // The error quotes at most 120 characters of the input.
                prop_assert!(e.input.chars().count() <= 121);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rotation dates
// ---------------------------------------------------------------------------------------

/// 1970-01-01 to 9999-12-31 (what a four-digit year can say).
fn arb_instant() -> BoxedStrategy<DateTime<Utc>> {
    (0i64..=253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap()).boxed()
}

fn arb_offset() -> impl Strategy<Value = FixedOffset> {
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

// ---------------------------------------------------------------------------------------
// The verdict
// ---------------------------------------------------------------------------------------

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

/// What a COMPLIANT verdict needs to stand on: the README's checks, restated.
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

// ---------------------------------------------------------------------------------------
// Rule parameters
// ---------------------------------------------------------------------------------------

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
