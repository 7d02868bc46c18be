//! Seeding for tests: the library's `testbed` (one implementation), failing the test on
//! error, and the estate the sample events in events/ describe.
#![allow(dead_code)]

use aws_sdk_kms::types::OriginType;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::testbed as lib;
pub use kms_rotation_guard::testbed::Sse;

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

/// The key ids the sample events name. AWS records key ARNs on RDS resources and DynamoDB
/// tables, never aliases, so the samples do too; the tests create the keys (moto picks
/// their ids) and rewrite these placeholders to them.
pub const SAMPLE_KEY_IDS: [(&str, &str); 4] = [
    ("prod-rds", "5f0a9d1e-2b3c-4d5e-8f70-0123456789a1"),
    ("dev-rds", "5f0a9d1e-2b3c-4d5e-8f70-0123456789a2"),
    ("prod-dynamodb", "5f0a9d1e-2b3c-4d5e-8f70-0123456789a3"),
    ("workload-dynamodb", "5f0a9d1e-2b3c-4d5e-8f70-0123456789a4"),
];

/// The keys of the estate, by the placeholder id the sample events use.
#[derive(Debug, Clone, Default)]
pub struct SampleKeys(Vec<(&'static str, String)>);

impl SampleKeys {
    /// Keys a test created itself, by the estate alias they stand for.
    pub fn of(created: &[(&str, &str)]) -> SampleKeys {
        SampleKeys(
            created
                .iter()
                .map(|(alias, id)| (SAMPLE_KEY_IDS.iter().find(|(a, _)| a == alias).unwrap().1, id.to_string()))
                .collect(),
        )
    }

    /// The real key id behind an alias of the estate.
    pub fn id(&self, alias: &str) -> &str {
        let placeholder = SAMPLE_KEY_IDS.iter().find(|(a, _)| *a == alias).expect("a sample key").1;
        &self.0.iter().find(|(p, _)| *p == placeholder).expect("created").1
    }

    pub fn key_arn(&self, account: &str, alias: &str) -> String {
        format!("arn:aws:kms:{REGION}:{account}:key/{}", self.id(alias))
    }

    pub fn rewrite(&self, text: &str) -> String {
        self.0.iter().fold(text.to_string(), |t, (placeholder, real)| t.replace(placeholder, real))
    }

    /// events/`name`, naming the keys this test created.
    pub fn event(&self, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(root().join("events").join(name)).unwrap();
        serde_json::from_str(&self.rewrite(&text)).unwrap()
    }

    /// events/`name` rewritten into `dir`, for the CLI.
    pub fn event_file(&self, name: &str, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec(&self.event(name)).unwrap()).unwrap();
        path
    }
}

/// The estate the sample events describe. Keys are created now, so tests judge it 30
/// days from now: a tag of today is then 30 days old. RDS and DynamoDB resources name
/// their keys by ARN, as AWS records them; buckets may name an alias, as S3 allows.
pub async fn event_estate(moto: &Moto) -> SampleKeys {
    let today = ymd(chrono::Utc::now());
    let security = assumed(&moto.endpoint, SECURITY).await;
    let ext = || OriginType::External;
    let mut ids = Vec::new();
    let mut named = |alias: &'static str, id: String| {
        let placeholder = SAMPLE_KEY_IDS.iter().find(|(a, _)| *a == alias).unwrap().1;
        ids.push((placeholder, id));
    };
    named("prod-rds", key(&security, "prod-rds", ext(), &[("LastRotationDate", &today)]).await);
    key(&security, "prod-s3", ext(), &[("LastRotationDate", &ymd(days_from_now(-400)))]).await;
    named("prod-dynamodb", key(&security, "prod-dynamodb", ext(), &[]).await);
    // Claims a rotation in 28 days' time; KMS only ever saw the key's creation today.
    let dev_rds = key(&security, "dev-rds", ext(), &[("LastRotationDate", &ymd(days_from_now(28)))]).await;
    // KMS dates the rotation today; a first import alone would have no date to hold against.
    security.kms().rotate_key_on_demand().key_id(&dev_rds).send().await.unwrap();
    named("dev-rds", dev_rds);
    let dev_s3 = key(&security, "dev-s3", ext(), &[("LastRotationDate", &today)]).await;
    security.kms().disable_key().key_id(dev_s3).send().await.unwrap();

    let (wl, _) = workload(&moto.endpoint).await;
    named("workload-dynamodb", key(&wl, "workload-dynamodb", ext(), &[("LastRotationDate", &today)]).await);
    let keys = SampleKeys(ids);
    rds_instance(&wl, "orders-prod", Some(&keys.key_arn(SECURITY, "prod-rds"))).await;
    rds_cluster(&wl, "ledger-aurora", Some(&keys.key_arn(SECURITY, "dev-rds"))).await;
    table(&wl, "sessions", Some(&keys.key_arn(SECURITY, "prod-dynamodb"))).await;
    table(&wl, "carts", Some(&keys.key_arn(WORKLOAD, "workload-dynamodb"))).await;
    table(&wl, "audit-trail", None).await;
    bucket(&wl, "invoices-prod", Sse::Kms(Some(&alias_arn(SECURITY, "prod-s3")))).await;
    bucket(&wl, "static-assets", Sse::S3).await;
    bucket(&wl, "exports-prod", Sse::Kms(None)).await;
    bucket(&wl, "ledger-archive", Sse::Kms(Some(&alias_arn(SECURITY, "dev-s3")))).await;
    keys
}
