//! The estate: its plan (resources per family, keys, tag ages) and seeding it into moto.

use super::*;

pub(crate) struct Plan {
    pub(crate) rds: usize,
    pub(crate) dynamodb: usize,
    pub(crate) s3: usize,
    pub(crate) keys: usize,
}

impl Plan {
    pub(crate) fn new(resources: usize, keys: usize) -> Plan {
        let rds = resources * 20 / 100;
        let dynamodb = resources * 40 / 100;
        Plan { rds, dynamodb, s3: resources - rds - dynamodb, keys }
    }
    /// Resource `global` (numbered across families: RDS, then DynamoDB, then S3) uses this key.
    pub(crate) fn key_of(&self, global: usize) -> usize {
        global % self.keys
    }
    pub(crate) fn alias(k: usize) -> String {
        format!("bench-key-{k:04}")
    }
    pub(crate) fn alias_arn(k: usize) -> String {
        format!("arn:aws:kms:{REGION}:{SECURITY}:alias/{}", Plan::alias(k))
    }
    /// Age of key k's LastRotationDate tag: spread over 0..500 days, so about a quarter of
    /// the keys are older than the 365-day limit.
    pub(crate) fn age_days(k: usize) -> i64 {
        ((k * 53 + 17) % 500) as i64
    }
    /// (rule, resources, distinct keys) per rule.
    pub(crate) fn per_rule(&self) -> Vec<(Rule, usize, usize)> {
        let distinct = |from: usize, n: usize| (from..from + n).map(|g| self.key_of(g)).collect::<BTreeSet<_>>().len();
        vec![
            (rule::RDS, self.rds, distinct(0, self.rds)),
            (rule::DYNAMODB, self.dynamodb, distinct(self.rds, self.dynamodb)),
            (rule::S3, self.s3, distinct(self.rds + self.dynamodb, self.s3)),
        ]
    }
}

pub(crate) async fn sdk_config(endpoints: &Endpoints, creds: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&endpoints.default)
        .credentials_provider(creds)
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .timeout_config(kms_rotation_guard::aws::timeouts())
        .load()
        .await
}

/// An `Aws` with each service at its own moto, as the evaluators will reach it.
pub(crate) async fn routed(endpoints: &Endpoints, creds: Credentials) -> Aws {
    let aws = Aws::new(sdk_config(endpoints, creds).await);
    endpoints.by_service.iter().fold(aws, |aws, (service, url)| aws.with_service_endpoint(service, url.clone()))
}

/// Keys in the security account (through an assumed role, as tests/common `assumed`),
/// SEED_CONCURRENCY requests in flight.
pub(crate) async fn seed_keys(endpoints: &Endpoints, plan: &Plan) -> Result<()> {
    let base = routed(endpoints, Credentials::new("testing", "testing", None, None, "bench")).await;
    let assumed = base
        .sts()
        .assume_role()
        .role_arn(format!("arn:aws:iam::{SECURITY}:role/admin"))
        .role_session_name("bench-seed")
        .send()
        .await
        .context("assume role into the security account")?;
    let c = assumed.credentials().context("no credentials")?;
    let security = routed(
        endpoints,
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().into()), None, "bench"),
    )
    .await;
    let today = chrono::Utc::now();
    let security = &security;
    futures_util::stream::iter(0..plan.keys)
        .map(|k| async move {
            let date = (today - chrono::Duration::days(Plan::age_days(k))).format("%Y-%m-%d").to_string();
            let tag = Tag::builder().tag_key("LastRotationDate").tag_value(date).build()?;
            let id = security
                .kms()
                .create_key()
                .origin(OriginType::External)
                .description(format!("{} bench key", Plan::alias(k)))
                .tags(tag)
                .send()
                .await
                .context("create key")?
                .key_metadata()
                .context("no key metadata")?
                .key_id()
                .to_string();
            security
                .kms()
                .create_alias()
                .alias_name(format!("alias/{}", Plan::alias(k)))
                .target_key_id(id)
                .send()
                .await
                .context("create alias")?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The workload's resources (into one replica of each resource service), SEED_CONCURRENCY
/// requests in flight. They name their keys by alias ARN, so every replica holds the same.
///
/// With replicas, DynamoDB tables are created one at a time: moto lists tables in creation
/// order and pages ListTables by the last name returned, so every replica must hold them in
/// the same order for a page from one to continue at another.
pub(crate) async fn seed_resources(
    endpoints: &Endpoints,
    plan: &Plan,
    services: &[&str],
    replicated: bool,
) -> Result<()> {
    let base = routed(endpoints, Credentials::new("testing", "testing", None, None, "bench")).await;
    seed_resources_with(plan, services, replicated, &|_| &base).await
}

/// [`seed_resources`] with resource `g` created through `aws_of(g)` (its account's access).
pub(crate) async fn seed_resources_with<'a>(
    plan: &Plan,
    services: &[&str],
    replicated: bool,
    aws_of: &(dyn Fn(usize) -> &'a Aws + Sync),
) -> Result<()> {
    let total = plan.rds + plan.dynamodb + plan.s3;
    let done = &AtomicUsize::new(0);
    let started = Instant::now();
    let tables = plan.rds..plan.rds + plan.dynamodb;
    // Only the families this replica set serves (RDS lives in one process).
    let wanted = |g: &usize| {
        let service = if *g < plan.rds {
            "rds"
        } else if tables.contains(g) {
            "dynamodb"
        } else {
            "s3"
        };
        services.contains(&service)
    };
    let todo = (0..total).filter(|g| wanted(g)).count();
    let create = |g: usize| async move {
        let wl = aws_of(g);
        let key = Plan::alias_arn(plan.key_of(g));
        if g < plan.rds {
            wl.rds()
                .create_db_instance()
                .db_instance_identifier(format!("bench-db-{g:05}"))
                .db_instance_class("db.t3.micro")
                .engine("postgres")
                .master_username("admin")
                .master_user_password("password123!")
                .allocated_storage(20)
                .storage_encrypted(true)
                .kms_key_id(key)
                .send()
                .await
                .context("create db instance")?;
        } else if g < plan.rds + plan.dynamodb {
            let pk =
                || AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build();
            wl.dynamodb()
                .create_table()
                .table_name(format!("bench-table-{g:05}"))
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(pk()?)
                .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build()?)
                .sse_specification(
                    SseSpecification::builder().enabled(true).sse_type("KMS".into()).kms_master_key_id(key).build(),
                )
                .send()
                .await
                .context("create table")?;
        } else {
            let name = format!("bench-bucket-{g:05}");
            wl.s3()
                .create_bucket()
                .bucket(&name)
                .create_bucket_configuration(
                    CreateBucketConfiguration::builder().location_constraint(REGION.into()).build(),
                )
                .send()
                .await
                .context("create bucket")?;
            let default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key)
                .build()?;
            let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build();
            wl.s3()
                .put_bucket_encryption()
                .bucket(&name)
                .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
                .send()
                .await
                .context("put bucket encryption")?;
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1000) || n == todo {
            eprintln!("bench:   seeded {n}/{todo} resources ({:.0} s)", started.elapsed().as_secs_f64());
        }
        Ok::<_, anyhow::Error>(())
    };
    let others: Vec<usize> = (0..total).filter(|g| !tables.contains(g) && wanted(g)).collect();
    futures_util::stream::iter(others).map(create).buffer_unordered(SEED_CONCURRENCY).try_collect::<Vec<_>>().await?;
    let in_flight = if replicated { 1 } else { SEED_CONCURRENCY };
    let tables: Vec<usize> = tables.clone().filter(|g| wanted(g)).collect();
    futures_util::stream::iter(tables).map(create).buffer_unordered(in_flight).try_collect::<Vec<_>>().await?;
    Ok(())
}
