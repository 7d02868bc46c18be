//! The watcher on moto: CloudTrail KMS records in AWS's published shape, delivered as
//! EventBridge events — with and without an errorCode, from another account, and the
//! rotation's own probe. Alerts go to a test sink; one also goes to moto's SNS.

use std::sync::Mutex;

use chrono::Utc;
use kms_rotation_guard::runbook::watch::{self, Alert, AlertSink, SnsTopic, WatchSettings};
use kms_rotation_guard::runbook::RunbookError;
use serde_json::{json, Value};

use crate::common::*;
use crate::*;

#[derive(Default)]
struct Collected(Mutex<Vec<Alert>>);

impl AlertSink for Collected {
    async fn send(&self, alert: &Alert) -> Result<Option<String>, RunbookError> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(Some("test".into()))
    }
}

fn event(detail: Value) -> Value {
    json!({"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "AWS API Call via CloudTrail",
           "source": "aws.kms", "account": SECURITY, "time": now_rfc3339(), "region": REGION, "resources": [],
           "detail": detail})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_on_a_workloads_failure_with_alias_age_account_and_principal_and_ignores_the_rest() {
    let moto = Moto::start_in(Some(SECURITY));
    let (aws, _) = workload(&moto.endpoint).await;
    // moto starts EXTERNAL keys Enabled (AWS: PendingImport), which suits a watcher test.
    let key = aws
        .kms()
        .create_key()
        .origin(aws_sdk_kms::types::OriginType::External)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let rotated = ymd(days_from_now(-12));
    for (k, v) in [("kms-rotation-guard", "enabled"), ("LastRotationDate", rotated.as_str())] {
        aws.kms()
            .tag_resource()
            .key_id(&key)
            .tags(aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build().unwrap())
            .send()
            .await
            .unwrap();
    }
    aws.kms().create_alias().alias_name("alias/prod-orders").target_key_id(&key).send().await.unwrap();
    let settings = WatchSettings {
        topic_arn: "arn:aws:sns:eu-west-1:111111111111:alerts".into(),
        guard_value: Some("enabled".into()),
        rotation_tag_key: "LastRotationDate".into(),
    };
    let sink = Collected::default();
    let now = Utc::now();
    let at = now_rfc3339();

    let failed = kms_record("Decrypt", &key, WORKLOAD, Some("AccessDeniedException"), json!({"app": "orders"}), &at);
    let h = watch::handle(&aws, &settings, &sink, &event(failed), now).await.unwrap();
    assert!(h.alerted, "{}", h.reason);
    let ok = kms_record("Decrypt", &key, WORKLOAD, None, json!({"app": "orders"}), &at);
    assert!(!watch::handle(&aws, &settings, &sink, &event(ok), now).await.unwrap().alerted);
    let probe = kms_record(
        "Decrypt",
        &key,
        SECURITY,
        Some("InvalidCiphertextException"),
        json!({"kms-rotation-guard:probe": "verification"}),
        &at,
    );
    assert!(!watch::handle(&aws, &settings, &sink, &event(probe), now).await.unwrap().alerted);
    let grant = kms_record("CreateGrant", &key, "333333333333", Some("DisabledException"), json!({}), &at);
    assert!(watch::handle(&aws, &settings, &sink, &event(grant), now).await.unwrap().alerted);

    let alerts = sink.0.lock().unwrap();
    assert_eq!(alerts.len(), 2, "one alert per failure, none for success or the probe");
    let a = &alerts[0];
    assert_eq!(a.aliases, vec!["alias/prod-orders".to_string()]);
    assert_eq!(a.days_since_rotation, Some(12));
    let m = a.message();
    for want in [WORKLOAD, "assumed-role/app/session", "AccessDeniedException", "alias/prod-orders"] {
        assert!(m.contains(want), "{want} missing from {m}");
    }
    assert_eq!(alerts[1].call.caller_account.as_deref(), Some("333333333333"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unguarded_key_is_not_watched_and_the_alert_reaches_sns() {
    let moto = Moto::start_in(Some(SECURITY));
    let (aws, _) = workload(&moto.endpoint).await;
    let key = aws.kms().create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    let settings = WatchSettings {
        topic_arn: String::new(),
        guard_value: Some("enabled".into()),
        rotation_tag_key: "LastRotationDate".into(),
    };
    let sink = Collected::default();
    let failed = kms_record("Decrypt", &key, WORKLOAD, Some("AccessDeniedException"), json!({}), &now_rfc3339());
    let h = watch::handle(&aws, &settings, &sink, &event(failed.clone()), Utc::now()).await.unwrap();
    assert!(!h.alerted && h.reason.contains("not tagged"), "{}", h.reason);

    let topic = aws.sns().create_topic().name("alerts").send().await.unwrap().topic_arn().unwrap().to_string();
    let settings = WatchSettings { topic_arn: topic.clone(), guard_value: None, ..settings };
    let sns = SnsTopic { aws: &aws, topic_arn: topic };
    let h = watch::handle(&aws, &settings, &sns, &event(failed), Utc::now()).await.unwrap();
    assert!(h.alerted && h.message_id.is_some(), "{h:?}");
}
