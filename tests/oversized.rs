//! Config paths moto cannot serve. The oversized-item path: GetResourceConfigHistory with laterTime = the summary's capture
//! time, following nextToken past an empty page. moto cannot serve this (it ignores
//! laterTime and writes non-RFC 3339 times the SDK rejects), so Config is played by a small
//! HTTP endpoint answering in the shape of the AWS API reference, and records what it was
//! asked. KMS is a real moto server.

mod common;

use aws_sdk_kms::types::OriginType;
use common::fake_config;
use common::*;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::{handler, rule};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_item_is_fetched_at_its_capture_time_across_empty_pages() {
    let moto = Moto::start();
    let (wl, _) = workload(&moto.endpoint).await;
    let today = ymd(chrono::Utc::now());
    seed::key(&wl, "archive", OriginType::External, &[("LastRotationDate", &today)]).await;

    // The item as AWS returns it: epoch-second timestamps, configuration as a JSON string,
    // supplementary values as JSON strings.
    let rules = json!({"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyID": format!("arn:aws:kms:{REGION}:{WORKLOAD}:alias/archive")}}]});
    let item = json!({
        "version": "1.3", "accountId": WORKLOAD, "configurationItemCaptureTime": 1.7956e9,
        "configurationItemStatus": "OK", "resourceType": "AWS::S3::Bucket", "resourceId": "ledger-archive",
        "resourceName": "ledger-archive", "awsRegion": REGION,
        "configuration": json!({"name": "ledger-archive"}).to_string(),
        "supplementaryConfiguration": {"ServerSideEncryptionConfiguration": rules.to_string()}
    });
    let (config, seen) = fake_config(vec![
        json!({"configurationItems": [], "nextToken": "page-2"}),
        json!({"configurationItems": [item]}),
    ]);
    let aws = Aws::new(sdk_config(&moto.endpoint, static_creds()).await).with_service_endpoint("config", config);
    let mut payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-bucket-oversized.json")).unwrap()).unwrap();
    payload["ruleParameters"] = Value::String("{}".into());

    let outcome = handler::handle(&aws, rule::S3, payload, days_from_now(1), None).await.unwrap();
    assert_eq!(outcome.evaluations.len(), 1);
    let e = &outcome.evaluations[0];
    assert_eq!((e.resource_id.as_str(), e.compliance.as_str()), ("ledger-archive", "COMPLIANT"), "{e:?}");
    assert_eq!(
        e.ordering_timestamp.to_rfc3339(),
        "2026-11-20T10:15:30.123+00:00",
        "ordered by the item's capture time"
    );

    let seen = seen.lock().unwrap();
    let history: Vec<&Value> = seen.iter().filter(|(t, _)| t == "getresourceconfighistory").map(|(_, b)| b).collect();
    assert_eq!(history.len(), 2, "followed nextToken past the empty page: {seen:?}");
    for h in &history {
        assert_eq!(h["resourceType"], "AWS::S3::Bucket");
        assert_eq!(h["resourceId"], "ledger-archive");
        // 2026-11-20T10:15:30.123Z, the summary's capture time.
        assert_eq!(h["laterTime"].as_f64(), Some(1_795_169_730.123), "{h}");
    }
    assert_eq!(history[1]["nextToken"], "page-2");
    assert_eq!(seen.iter().filter(|(t, _)| t == "putevaluations").count(), 1);
}

/// A periodic sweep outside TestMode retires results whose resource is gone, matching on
/// (type, id): a table named like a live bucket is retired, the bucket is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_sweep_retires_results_of_resources_that_are_gone() {
    let moto = Moto::start();
    let (wl, _) = workload(&moto.endpoint).await;
    seed::bucket(&wl, "orders", seed::Sse::S3).await;
    let result = |t: &str, id: &str| {
        json!({"EvaluationResultIdentifier": {"EvaluationResultQualifier": {"ConfigRuleName": "kms-rotation-s3", "ResourceType": t, "ResourceId": id}},
               "ComplianceType": "NON_COMPLIANT"})
    };
    let (config, seen) = fake_config(vec![json!({"EvaluationResults": [
        result("AWS::S3::Bucket", "orders"),
        result("AWS::DynamoDB::Table", "orders"),
        result("AWS::S3::Bucket", "deleted-last-week"),
    ]})]);
    let aws = Aws::new(sdk_config(&moto.endpoint, static_creds()).await).with_service_endpoint("config", config);
    let mut payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-periodic.json")).unwrap()).unwrap();
    payload["resultToken"] = Value::String("a-real-result-token".into());
    let outcome = handler::handle(&aws, rule::S3, payload, chrono::Utc::now(), None).await.unwrap();

    let mut got: Vec<(String, String, String)> = outcome
        .evaluations
        .iter()
        .map(|e| (e.resource_type.clone(), e.resource_id.clone(), e.compliance.as_str().to_string()))
        .collect();
    got.sort();
    let want = [
        ("AWS::DynamoDB::Table", "orders", "NOT_APPLICABLE"),
        ("AWS::S3::Bucket", "deleted-last-week", "NOT_APPLICABLE"),
        ("AWS::S3::Bucket", "orders", "NON_COMPLIANT"),
    ];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
    let seen = seen.lock().unwrap();
    let put: Vec<&Value> = seen.iter().filter(|(t, _)| t == "putevaluations").map(|(_, b)| b).collect();
    assert_eq!(put.len(), 1);
    assert_eq!(put[0]["TestMode"], false);
    assert_eq!(put[0]["Evaluations"].as_array().unwrap().len(), 3);
}

/// An oversized notification for a type the rule does not judge (an S3 item sent to the
/// RDS rule) is NOT_APPLICABLE from its summary alone: no history is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_item_of_another_type_is_not_applicable_before_any_fetch() {
    let (config, seen) = fake_config(vec![json!({"configurationItems": []})]);
    let aws = Aws::new(sdk_config(&config, static_creds()).await).with_service_endpoint("config", config.clone());
    let payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-bucket-oversized.json")).unwrap()).unwrap();

    let outcome = handler::handle(&aws, rule::RDS, payload, days_from_now(1), None).await.unwrap();
    assert_eq!(outcome.evaluations.len(), 1);
    let e = &outcome.evaluations[0];
    assert_eq!((e.resource_type.as_str(), e.compliance.as_str()), ("AWS::S3::Bucket", "NOT_APPLICABLE"), "{e:?}");
    assert!(e.annotation.contains("not evaluated by this rule"), "{}", e.annotation);
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|(t, _)| t == "getresourceconfighistory"), "history was fetched: {seen:?}");
    assert_eq!(seen.iter().filter(|(t, _)| t == "putevaluations").count(), 1);
}
