//! Builds estates in the emulator through the same SDK the product uses.
#![allow(dead_code)]

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification,
};
use aws_sdk_kms::types::{OriginType, Tag};
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use kms_rotation_guard::aws::Aws;

/// Creates a key with an alias and tags; returns its key id.
pub async fn key(aws: &Aws, alias: &str, origin: OriginType, tags: &[(&str, &str)]) -> String {
    let mut req = aws.kms().create_key().origin(origin).description(format!("{alias} test key"));
    for (k, v) in tags {
        req = req.tags(Tag::builder().tag_key(*k).tag_value(*v).build().unwrap());
    }
    let id = req.send().await.expect("create key").key_metadata().unwrap().key_id().to_string();
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&id).send().await.expect("alias");
    id
}

pub async fn rds_instance(aws: &Aws, name: &str, kms: Option<&str>) {
    aws.rds()
        .create_db_instance()
        .db_instance_identifier(name)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("admin")
        .master_user_password("password123!")
        .allocated_storage(20)
        .storage_encrypted(kms.is_some())
        .set_kms_key_id(kms.map(str::to_string))
        .send()
        .await
        .expect("create db instance");
}

pub async fn rds_cluster(aws: &Aws, name: &str, kms: Option<&str>) {
    aws.rds()
        .create_db_cluster()
        .db_cluster_identifier(name)
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("password123!")
        .storage_encrypted(kms.is_some())
        .set_kms_key_id(kms.map(str::to_string))
        .send()
        .await
        .expect("create db cluster");
}

pub async fn table(aws: &Aws, name: &str, kms: Option<&str>) {
    let mut req = aws
        .dynamodb()
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap());
    if let Some(k) = kms {
        req = req.sse_specification(
            SseSpecification::builder().enabled(true).sse_type("KMS".into()).kms_master_key_id(k).build(),
        );
    }
    req.send().await.expect("create table");
}

pub enum Sse<'a> {
    None,
    S3,
    Kms(Option<&'a str>),
}

pub async fn bucket(aws: &Aws, name: &str, sse: Sse<'_>) {
    aws.s3()
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(super::REGION.into()).build(),
        )
        .send()
        .await
        .expect("create bucket");
    let default = match sse {
        Sse::None => return,
        Sse::S3 => ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256),
        Sse::Kms(k) => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .set_kms_master_key_id(k.map(str::to_string)),
    };
    let rule =
        ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default.build().unwrap()).build();
    aws.s3()
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap())
        .send()
        .await
        .expect("put bucket encryption");
}
