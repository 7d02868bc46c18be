//! Each key's entry and findings, and the rendered page's escaping and digest.

use super::*;
use crate::key::Rotation;

fn now() -> DateTime<Utc> {
    "2026-12-04T00:00:00Z".parse().unwrap()
}

fn external(tags: &[(&str, &str)], dated_rotations: usize) -> KeyFacts {
    let mut f = KeyFacts::new("k1", "111111111111", "EXTERNAL");
    f.tags = Fact::Known(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let mut rs = vec![Rotation {
        date: None,
        material_id: Some("m0".into()),
        material_state: Some("NON_CURRENT".into()),
        expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
        valid_to: Some(now() + Duration::days(10)),
    }];
    for i in 0..dated_rotations {
        rs.push(Rotation {
            date: Some(now() - Duration::days(40 - i as i64)),
            material_id: Some(format!("m{}", i + 1)),
            material_state: Some(if i + 1 == dated_rotations { "CURRENT" } else { "NON_CURRENT" }.into()),
            expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
            valid_to: None,
        });
    }
    f.rotations = Fact::Known(rs);
    f
}

#[test]
fn points_out_every_finding_the_runbook_names() {
    let usage = ResourceUsage::default();
    let e = entry(
        "eu-west-1",
        &external(&[("Environment", "prod")], 22),
        &[],
        Some(&usage),
        Some(false),
        &InventoryPolicy::default(),
        now(),
    );
    let all = e.findings.join("\n");
    for want in ["no resource uses it", "without the guard tag", "only 3 of 25", "m0 expires on 2026-12-14", "NOT HELD"]
    {
        assert!(all.contains(want), "{want} missing: {all}");
    }
    assert_eq!(e.environment.as_deref(), Some("prod"));
    assert_eq!(e.rotations_left, Some(3));
    assert_eq!(e.material_age_days, Some(19));
}

#[test]
fn material_older_than_the_limit_is_due() {
    let f = external(&[("kms-rotation-guard", "enabled"), ("LastRotationDate", "2025-06-01")], 0);
    let mut f = f;
    f.rotations = Fact::Known(vec![]);
    let e = entry("eu-west-1", &f, &[], None, None, &InventoryPolicy::default(), now());
    assert_eq!(e.findings.len(), 1, "{:?}", e.findings);
    assert!(e.findings[0].contains("551 days old, over maxKeyAgeDays 365"), "{:?}", e.findings);
}

#[test]
fn a_guarded_used_healthy_key_has_no_finding() {
    let mut f = external(&[("kms-rotation-guard", "enabled"), ("Environment", "dev"), ("Service", "payments")], 1);
    f.rotations = Fact::Known(vec![]);
    let usage = ResourceUsage {
        rows: vec![super::super::usage::UsageRow {
            account: "2".into(),
            region: "eu-west-1".into(),
            resource_type: "AWS::S3::Bucket".into(),
            resource_id: "b".into(),
            key_arn: Some(f.key_arn.clone()),
            key_reference: None,
        }],
        ..Default::default()
    };
    let e = entry("eu-west-1", &f, &["alias/dev".into()], Some(&usage), Some(true), &InventoryPolicy::default(), now());
    assert!(e.findings.is_empty(), "{:?}", e.findings);
    assert_eq!(e.service.as_deref(), Some("payments"));
    assert_eq!(e.resources.unwrap().len(), 1);
    assert_eq!(e.rotations_left, Some(25));
}

#[test]
fn custom_key_store_is_pointed_out_and_values_from_aws_are_escaped_in_html() {
    let mut f = KeyFacts::new("k2", "111111111111", "AWS_CLOUDHSM");
    f.tags = Fact::Known([("Environment".to_string(), "<script>x</script>".to_string())].into());
    let e = entry("eu-west-1", &f, &[], None, None, &InventoryPolicy::default(), now());
    assert!(e.findings.iter().any(|x| x.contains("custom key store")));
    let inv = Inventory {
        account: "111111111111".into(),
        regions: vec!["eu-west-1".into()],
        generated: now(),
        resources_from: None,
        keys: vec![e],
        unread: vec![],
        scan_blind_spots: vec![],
    };
    let page = html(&inv);
    assert!(!page.contains("<script>x"), "AWS values must be escaped");
    assert!(page.contains(&crate::audit::sha256_hex(json(&inv).as_bytes())));
    assert!(table(&inv).contains("custom key store"));
}
