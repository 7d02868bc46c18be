//! Malformed configuration items: the fields every family reads, then RDS, DynamoDB and S3.

use super::*;

pub(crate) fn cases() -> Vec<Case> {
    use Expect::*;
    let (s3, rds, ddb) = (rule::S3, rule::RDS, rule::DYNAMODB);
    vec![
        // ---- the configuration item: fields every family reads ----
        case(
            "unknown resource type (designed: NOT_APPLICABLE)",
            s3,
            with_item(S3_CHANGE, |i| i["resourceType"] = json!("AWS::EC2::Instance")),
            NotApplicable("resource type AWS::EC2::Instance is not evaluated by this rule"),
        ),
        case(
            "resourceType a number",
            s3,
            with_item(S3_CHANGE, |i| i["resourceType"] = json!(3)),
            Err(&["configurationItem.resourceType must be a string"]),
        ),
        case(
            "resourceType missing",
            s3,
            with_item(S3_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("resourceType");
            }),
            Err(&["configurationItem.resourceType is missing"]),
        ),
        case(
            "resourceId a number",
            rds,
            with_item(RDS_CHANGE, |i| i["resourceId"] = json!(12)),
            Err(&["configurationItem.resourceId must be a string"]),
        ),
        case(
            "resourceId null",
            ddb,
            with_item(DDB_CHANGE, |i| i["resourceId"] = Value::Null),
            Err(&["configurationItem.resourceId is missing"]),
        ),
        case(
            "awsRegion a list",
            s3,
            with_item(S3_CHANGE, |i| i["awsRegion"] = json!(["eu-west-1"])),
            Err(&["configurationItem.awsRegion must be a string"]),
        ),
        case(
            "awsRegion missing",
            rds,
            with_item(RDS_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("awsRegion");
            }),
            Err(&["configurationItem.awsRegion is missing"]),
        ),
        case(
            "awsAccountId a number",
            ddb,
            with_item(DDB_CHANGE, |i| i["awsAccountId"] = json!(123456789012u64)),
            Err(&["configurationItem.awsAccountId must be a string"]),
        ),
        // ---- RDS ----
        case(
            "RDS configuration missing",
            rds,
            with_item(RDS_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("configuration");
            }),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "RDS configuration null on an OK item",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"] = Value::Null),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "RDS cluster configuration null on an OK item",
            rds,
            with_item(RDS_CLUSTER, |i| i["configuration"] = Value::Null),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "storageEncrypted a string",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"]["storageEncrypted"] = json!("true")),
            Err(&["configuration.storageEncrypted must be a boolean"]),
        ),
        case(
            "storageEncrypted a number",
            rds,
            with_item(RDS_CLUSTER, |i| i["configuration"]["storageEncrypted"] = json!(1)),
            Err(&["configuration.storageEncrypted must be a boolean"]),
        ),
        case(
            "kmsKeyId a number",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"]["kmsKeyId"] = json!(42)),
            Err(&["configuration.kmsKeyId must be a string"]),
        ),
        case(
            "kmsKeyId an object",
            rds,
            with_item(RDS_CLUSTER, |i| i["configuration"]["kmsKeyId"] = json!({"arn": "x"})),
            Err(&["configuration.kmsKeyId must be a string"]),
        ),
        case(
            "kmsKeyId not a key reference",
            rds,
            with_item(RDS_CHANGE, |i| i["configuration"]["kmsKeyId"] = json!("arn:aws:s3:::not-a-key")),
            Err(&["kmsKeyId", "not a KMS key reference"]),
        ),
        case(
            "RDS encrypted but kmsKeyId missing",
            rds,
            with_item(RDS_CHANGE, |i| {
                i["configuration"].as_object_mut().unwrap().remove("kmsKeyId");
            }),
            NotCompliantOrErr("no KMS key is named", "kmsKeyId"),
        ),
        // ---- DynamoDB ----
        case(
            "DynamoDB configuration null on an OK item",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"] = Value::Null),
            Err(&["configurationItem.configuration is missing"]),
        ),
        case(
            "sSEDescription a string",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"] = json!("ENABLED")),
            Err(&["configuration.sSEDescription must be an object"]),
        ),
        case(
            "sSEDescription an array",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"] = json!([])),
            Err(&["configuration.sSEDescription must be an object"]),
        ),
        case(
            "kMSMasterKeyArn a number",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"]["kmsmasterKeyArn"] = json!(1)),
            Err(&["configuration.sSEDescription.kMSMasterKeyArn must be a string"]),
        ),
        case(
            "kMSMasterKeyArn not a key reference",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"]["kmsmasterKeyArn"] = json!("key please")),
            Err(&["kMSMasterKeyArn", "not a KMS key reference"]),
        ),
        case(
            "sSEDescription.status a boolean",
            ddb,
            with_item(DDB_CHANGE, |i| i["configuration"]["ssedescription"]["status"] = json!(true)),
            Err(&["configuration.sSEDescription.status must be a string"]),
        ),
        case(
            "DynamoDB SSE type KMS but kMSMasterKeyArn missing",
            ddb,
            with_item(DDB_CHANGE, |i| {
                i["configuration"]["ssedescription"].as_object_mut().unwrap().remove("kmsmasterKeyArn");
            }),
            // ENABLED without a key ARN: the AWS managed key aws/dynamodb.
            NotCompliantOrErr("aws/dynamodb is AWS-managed", "kmsmasterKeyArn"),
        ),
        // ---- S3 ----
        case(
            "ServerSideEncryptionConfiguration a string that is not JSON",
            s3,
            with_item(S3_CHANGE, |i| {
                i["supplementaryConfiguration"]["ServerSideEncryptionConfiguration"] = json!("{\"rules\": [")
            }),
            Err(&["ServerSideEncryptionConfiguration is a string but not JSON"]),
        ),
        case(
            "rules not an array",
            s3,
            with_s3_sse(|sse| sse["rules"] = json!({"0": {}})),
            Err(&["ServerSideEncryptionConfiguration.rules must be an array"]),
        ),
        case(
            "rules a string",
            s3,
            with_s3_sse(|sse| sse["rules"] = json!("AES256")),
            Err(&["ServerSideEncryptionConfiguration.rules must be an array"]),
        ),
        case(
            "sseAlgorithm unknown",
            s3,
            with_s3_sse(|sse| sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = json!("rot13")),
            Err(&["unknown sseAlgorithm", "rot13"]),
        ),
        case(
            "sseAlgorithm a number",
            s3,
            with_s3_sse(|sse| sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = json!(256)),
            Err(&["applyServerSideEncryptionByDefault.sseAlgorithm must be a string"]),
        ),
        case(
            "kmsMasterKeyID a number",
            s3,
            with_s3_sse(|sse| sse["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyID"] = json!(5)),
            Err(&["applyServerSideEncryptionByDefault.kmsMasterKeyID must be a string"]),
        ),
        case(
            "kmsMasterKeyID not a key reference",
            s3,
            with_s3_sse(|sse| {
                sse["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyID"] = json!("alias/has space")
            }),
            Err(&["kmsMasterKeyID", "not a KMS key reference"]),
        ),
        case(
            "S3 supplementaryConfiguration missing",
            s3,
            with_item(S3_CHANGE, |i| {
                i.as_object_mut().unwrap().remove("supplementaryConfiguration");
            }),
            NotCompliantOrErr("no default encryption is set", "supplementaryConfiguration"),
        ),
    ]
}
