//! Key references: every valid form parses, every broken one is refused.

use super::*;

const UUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
const MRK: &str = "mrk-[0-9a-fA-F]{32}";
const ALIAS_TAIL: &str = "[A-Za-z0-9/_-]{1,60}";
pub(crate) const ACCOUNT: &str = "[0-9]{12}";

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

pub(crate) fn arb_key_id() -> impl Strategy<Value = String> {
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

pub(crate) fn arb_key_ref() -> BoxedStrategy<KeyRef> {
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
