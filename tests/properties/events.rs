//! JSON values and the real sample events, mutated: parsing never panics.

use super::*;

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
