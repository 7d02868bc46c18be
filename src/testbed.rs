//! Seeds an emulator estate (keys with aliases, DB instances and clusters, tables, buckets)
//! through the same SDK the product uses: for the demo, the tests and the bench, one
//! implementation. Never used by the Lambdas, and nothing in the library imports it.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification,
};
use aws_sdk_kms::types::{OriginType, Tag};
use aws_sdk_s3::types::{
    CreateBucketConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};

use crate::aws::Aws;

/// Creates a key with an alias and tags; returns its key id.
pub async fn key(aws: &Aws, alias: &str, origin: OriginType, tags: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut req = aws.kms().create_key().origin(origin).description(format!("{alias} data key"));
    for (k, v) in tags {
        req = req.tags(Tag::builder().tag_key(*k).tag_value(*v).build()?);
    }
    let id = req
        .send()
        .await?
        .key_metadata()
        .map(|m| m.key_id().to_string())
        .ok_or_else(|| anyhow::anyhow!("CreateKey returned no key"))?;
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&id).send().await?;
    Ok(id)
}

/// A DB instance; encrypted with `key` when given.
pub async fn rds_instance(aws: &Aws, name: &str, key: Option<&str>) -> anyhow::Result<()> {
    aws.rds()
        .create_db_instance()
        .db_instance_identifier(name)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("app")
        .master_user_password("demo-password-1")
        .allocated_storage(20)
        .storage_encrypted(key.is_some())
        .set_kms_key_id(key.map(str::to_string))
        .send()
        .await?;
    Ok(())
}

/// An Aurora cluster; encrypted with `key` when given.
pub async fn rds_cluster(aws: &Aws, name: &str, key: Option<&str>) -> anyhow::Result<()> {
    aws.rds()
        .create_db_cluster()
        .db_cluster_identifier(name)
        .engine("aurora-postgresql")
        .master_username("app")
        .master_user_password("demo-password-1")
        .storage_encrypted(key.is_some())
        .set_kms_key_id(key.map(str::to_string))
        .send()
        .await?;
    Ok(())
}

/// A table on `key`, or on the AWS-owned key.
pub async fn table(aws: &Aws, name: &str, key: Option<&str>) -> anyhow::Result<()> {
    let mut req = aws
        .dynamodb()
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build()?,
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build()?);
    if let Some(k) = key {
        req = req.sse_specification(
            SseSpecification::builder().enabled(true).sse_type("KMS".into()).kms_master_key_id(k).build(),
        );
    }
    req.send().await?;
    Ok(())
}

/// A bucket's default encryption.
pub enum Sse<'a> {
    /// No default encryption configuration.
    None,
    /// SSE-S3 (AES256).
    S3,
    /// SSE-KMS with this key, or the AWS-managed `aws/s3` key.
    Kms(Option<&'a str>),
}

pub async fn bucket(aws: &Aws, name: &str, sse: Sse<'_>) -> anyhow::Result<()> {
    aws.s3()
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(aws.region().as_str().into()).build(),
        )
        .send()
        .await?;
    let default = match sse {
        Sse::None => return Ok(()),
        Sse::S3 => ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256),
        Sse::Kms(k) => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .set_kms_master_key_id(k.map(str::to_string)),
    };
    let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default.build()?).build();
    aws.s3()
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
        .send()
        .await?;
    Ok(())
}
