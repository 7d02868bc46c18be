//! One unreadable bucket, table or key never stops a sweep (AWS's own denial bodies).

use super::*;

/// AWS's answers for one unreadable bucket, table and key, as the API references give them.
/// moto enforces none of these (no bucket policies, no DynamoDB resource policies, no custom
/// key stores), so the fault proxy sends them for the named resources only.
fn named_denials(bucket: &str, table: &str, key_id: &str) -> Value {
    serde_json::json!([
        {
            // S3 API reference, "Error responses": 403 AccessDenied, XML body.
            "match": [format!("/{bucket}"), "encryption"],
            "status": 403,
            "content_type": "application/xml",
            "body": "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>5E3B6A1F2C9D8E7A</RequestId><HostId>fault-proxy</HostId></Error>"
        },
        {
            // DynamoDB: 400 with the coral-namespaced AccessDeniedException type.
            "match": ["DynamoDB_20120810.DescribeTable", format!("\"{table}\"")],
            "status": 400,
            "content_type": "application/x-amz-json-1.0",
            "body": serde_json::json!({
                "__type": "com.amazon.coral.service#AccessDeniedException",
                "Message": format!("User: arn:aws:sts::{WORKLOAD}:assumed-role/evaluator/kms-rotation-guard is not authorized to perform: dynamodb:DescribeTable on resource: arn:aws:dynamodb:{REGION}:{WORKLOAD}:table/{table} with an explicit deny in a resource-based policy")
            }).to_string()
        },
        {
            // KMS: UnsupportedOperationException for a key in a custom key store.
            "match": ["TrentService.ListKeyRotations", key_id],
            "status": 400,
            "content_type": "application/x-amz-json-1.1",
            "error_type": "UnsupportedOperationException",
            "body": serde_json::json!({
                "__type": "UnsupportedOperationException",
                "message": format!("arn:aws:kms:{REGION}:{WORKLOAD}:key/{key_id} origin is AWS_CLOUDHSM which is not valid for this operation.")
            }).to_string()
        }
    ])
}

/// One bucket whose policy denies s3:GetEncryptionConfiguration, one table whose resource
/// policy denies dynamodb:DescribeTable, one key in a custom key store: each periodic sweep
/// completes, judges the other resources as before, and names each cause. Throttling of
/// the same resources still fails the invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_bucket_table_or_key_never_stops_a_sweep() {
    let moto = Moto::start();
    let today = ymd(Utc::now());
    let (wl, _) = workload(&moto.endpoint).await;
    let tag = [("LastRotationDate", today.as_str())];
    seed::key(&wl, "apps", OriginType::External, &tag).await;
    let hsm = seed::key(&wl, "hsm", OriginType::AwsCloudhsm, &tag).await;
    let arn = |alias| seed::alias_arn(WORKLOAD, alias);
    seed::bucket(&wl, "open-bucket", seed::Sse::Kms(Some(&arn("apps")))).await;
    seed::bucket(&wl, "locked-bucket", seed::Sse::Kms(Some(&arn("apps")))).await;
    seed::bucket(&wl, "hsm-bucket", seed::Sse::Kms(Some(&arn("hsm")))).await;
    seed::table(&wl, "open-table", Some(&arn("apps"))).await;
    seed::table(&wl, "locked-table", Some(&arn("apps"))).await;

    let port = moto.port;
    let proxy = FaultProxy::answering(port, &named_denials("locked-bucket", "locked-table", &hsm));
    let aws = Aws::new(sdk_config(&proxy.endpoint, static_creds()).await);
    let periodic = |file: &str| {
        let mut e = sample(file);
        e["ruleParameters"] = "{}".into();
        e
    };
    let verdicts = |out: handler::Outcome| -> BTreeMap<String, (String, String)> {
        out.evaluations
            .into_iter()
            .map(|e| (e.resource_id, (e.compliance.as_str().to_string(), e.annotation)))
            .collect()
    };
    let now = Utc::now();
    let s3 = verdicts(handler::handle(&aws, rule::S3, periodic("s3-periodic.json"), now, None).await.unwrap());
    let ddb =
        verdicts(handler::handle(&aws, rule::DYNAMODB, periodic("dynamodb-periodic.json"), now, None).await.unwrap());
    let check = |got: &BTreeMap<String, (String, String)>, id: &str, compliance: &str, words: &[&str]| {
        let (c, a) = got.get(id).unwrap_or_else(|| panic!("{id} not judged: {got:?}"));
        assert_eq!(c, compliance, "{id}: {a}");
        for w in words {
            assert!(a.contains(w), "{id}: {a:?} lacks {w:?}");
        }
    };
    assert_eq!(s3.len(), 3, "{s3:?}");
    check(&s3, "open-bucket", "COMPLIANT", &["alias/apps", "0 days ago"]);
    check(&s3, "locked-bucket", "NON_COMPLIANT", &["s3:GetEncryptionConfiguration denied"]);
    check(&s3, "hsm-bucket", "COMPLIANT", &["alias/hsm", "KMS cannot rotate it"]);
    assert_eq!(ddb.len(), 2, "{ddb:?}");
    check(&ddb, "open-table", "COMPLIANT", &["alias/apps"]);
    check(&ddb, "locked-table", "NON_COMPLIANT", &["dynamodb:DescribeTable denied"]);
    let answered = proxy.stats()["aws_errors"].clone();
    for i in ["0", "1", "2"] {
        assert!(answered[i].as_u64().unwrap_or(0) >= 1, "AWS error {i} was never sent: {answered}");
    }
    drop(proxy);

    // The same resources throttled: no verdict, the invocation fails and says why.
    let slow_down = serde_json::json!([
        {"match": ["/locked-bucket", "encryption"], "status": 503, "content_type": "application/xml",
         "body": "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"},
        {"match": ["DynamoDB_20120810.DescribeTable", "\"locked-table\""], "status": 400,
         "content_type": "application/x-amz-json-1.0",
         "body": "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\",\"message\":\"Rate exceeded\"}"}
    ]);
    let proxy = FaultProxy::answering(port, &slow_down);
    let (aws, _) = faulty_aws(&proxy.endpoint).await;
    for (rule, file) in [(rule::S3, "s3-periodic.json"), (rule::DYNAMODB, "dynamodb-periodic.json")] {
        let err = handler::handle(&aws, rule, periodic(file), now, None).await.unwrap_err();
        assert!(err.is_transient() && clear(&err), "{file}: {err}");
    }
}
