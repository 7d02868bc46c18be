//! `keys` (the inventory) on moto: every key of the account, its tags and aliases, the
//! resources on it from a scan export (today's form), and what it points out.

use chrono::Utc;
use kms_rotation_guard::runbook::inventory::{self, InventoryPolicy};
use kms_rotation_guard::runbook::usage::ResourceUsage;
use serde_json::json;

use crate::common::*;

async fn key(aws: &kms_rotation_guard::aws::Aws, alias: &str, origin: &str, tags: &[(&str, &str)]) -> String {
    let mut c = aws.kms().create_key().origin(origin.into());
    for (k, v) in tags {
        c = c.tags(aws_sdk_kms::types::Tag::builder().tag_key(*k).tag_value(*v).build().unwrap());
    }
    let arn = c.send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&arn).send().await.unwrap();
    arn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_once_with_its_users_and_what_to_look_at() {
    let moto = Moto::start_in(Some(SECURITY));
    let (aws, counter) = workload(&moto.endpoint).await;
    let fresh = ymd(days_from_now(-10));
    let used = key(
        &aws,
        "prod-orders",
        "EXTERNAL",
        &[
            ("Environment", "prod"),
            ("Service", "orders"),
            ("kms-rotation-guard", "enabled"),
            ("LastRotationDate", &fresh),
        ],
    )
    .await;
    let unguarded = key(&aws, "dev-legacy", "EXTERNAL", &[("Environment", "dev")]).await;
    let export = json!([{"account": WORKLOAD, "region": REGION, "resourceType": "AWS::S3::Bucket", "resourceId": "orders",
                          "resourceName": "orders", "keyArn": used, "compliance": "COMPLIANT", "annotation": "ok"}]);
    let usage = ResourceUsage::parse(export.to_string().as_bytes()).unwrap();
    counter.reset();
    let inv = inventory::read(
        &aws,
        SECURITY,
        &[REGION.to_string()],
        None,
        Some((&usage, "scan.json".into())),
        &InventoryPolicy::default(),
        Utc::now(),
        &|_| {},
    )
    .await
    .unwrap();
    assert!(inv.complete(), "{:?}", inv.unread);
    assert_eq!(inv.keys.len(), 2);
    // dev before prod.
    assert_eq!(inv.keys[0].key_arn, unguarded);
    let dev = &inv.keys[0];
    assert!(dev.findings.iter().any(|f| f.contains("no resource uses it")), "{:?}", dev.findings);
    assert!(dev.findings.iter().any(|f| f.contains("without the guard tag")), "{:?}", dev.findings);
    let prod = &inv.keys[1];
    assert_eq!(prod.aliases, vec!["alias/prod-orders".to_string()]);
    assert_eq!(
        (prod.environment.as_deref(), prod.service.as_deref(), prod.guard.as_deref()),
        (Some("prod"), Some("orders"), Some("enabled"))
    );
    assert_eq!(prod.material_age_days, Some(10));
    assert_eq!(prod.resources.as_ref().unwrap().len(), 1);
    assert!(prod.findings.is_empty(), "{:?}", prod.findings);
    // One read set per key, one alias listing for the Region.
    assert_eq!(counter.get("kms.DescribeKey"), 2);
    assert_eq!(counter.get("kms.ListAliases"), 1);
    assert_eq!(counter.get("kms.ListResourceTags"), 2);
    let table = inventory::table(&inv);
    assert!(table.contains("alias/prod-orders") && table.contains("! no resource uses it"), "{table}");
}
