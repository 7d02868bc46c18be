//! Seeding for tests: the library's `demo::seed` (one implementation), failing the test on
//! error, and the estate the sample events in events/ describe.
#![allow(dead_code)]

use aws_sdk_kms::types::OriginType;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::demo::seed as lib;
pub use kms_rotation_guard::demo::seed::Sse;

use super::*;

pub async fn key(aws: &Aws, alias: &str, origin: OriginType, tags: &[(&str, &str)]) -> String {
    lib::key(aws, alias, origin, tags).await.expect("create key")
}

pub async fn rds_instance(aws: &Aws, name: &str, kms: Option<&str>) {
    lib::rds_instance(aws, name, kms).await.expect("create db instance")
}

pub async fn rds_cluster(aws: &Aws, name: &str, kms: Option<&str>) {
    lib::rds_cluster(aws, name, kms).await.expect("create db cluster")
}

pub async fn table(aws: &Aws, name: &str, kms: Option<&str>) {
    lib::table(aws, name, kms).await.expect("create table")
}

pub async fn bucket(aws: &Aws, name: &str, sse: Sse<'_>) {
    lib::bucket(aws, name, sse).await.expect("create bucket")
}

pub fn alias_arn(account: &str, alias: &str) -> String {
    format!("arn:aws:kms:{REGION}:{account}:alias/{alias}")
}

/// The estate the sample events describe. Keys are created now, so tests judge it 30
/// days from now: a tag of today is then 30 days old.
pub async fn event_estate(moto: &Moto) {
    let today = ymd(chrono::Utc::now());
    let security = assumed(&moto.endpoint, SECURITY).await;
    let ext = || OriginType::External;
    key(&security, "prod-rds", ext(), &[("LastRotationDate", &today)]).await;
    key(&security, "prod-s3", ext(), &[("LastRotationDate", &ymd(days_from_now(-400)))]).await;
    key(&security, "prod-dynamodb", ext(), &[]).await;
    // Claims a rotation in 28 days' time; KMS only ever saw the key's creation today.
    let dev_rds = key(&security, "dev-rds", ext(), &[("LastRotationDate", &ymd(days_from_now(28)))]).await;
    // KMS dates the rotation today; a first import alone would have no date to hold against.
    security.kms().rotate_key_on_demand().key_id(&dev_rds).send().await.unwrap();
    let dev_s3 = key(&security, "dev-s3", ext(), &[("LastRotationDate", &today)]).await;
    security.kms().disable_key().key_id(dev_s3).send().await.unwrap();

    let (wl, _) = workload(&moto.endpoint).await;
    key(&wl, "workload-dynamodb", ext(), &[("LastRotationDate", &today)]).await;
    rds_instance(&wl, "orders-prod", Some(&alias_arn(SECURITY, "prod-rds"))).await;
    rds_cluster(&wl, "ledger-aurora", Some(&alias_arn(SECURITY, "dev-rds"))).await;
    table(&wl, "sessions", Some(&alias_arn(SECURITY, "prod-dynamodb"))).await;
    table(&wl, "carts", Some(&alias_arn(WORKLOAD, "workload-dynamodb"))).await;
    table(&wl, "audit-trail", None).await;
    bucket(&wl, "invoices-prod", Sse::Kms(Some(&alias_arn(SECURITY, "prod-s3")))).await;
    bucket(&wl, "static-assets", Sse::S3).await;
    bucket(&wl, "exports-prod", Sse::Kms(None)).await;
    bucket(&wl, "ledger-archive", Sse::Kms(Some(&alias_arn(SECURITY, "dev-s3")))).await;
}
