//! Lambda handler of the key-use watcher (security-account.yaml `WatcherFunction`): one
//! EventBridge event per failed KMS call on a guarded key → one alert and one metric line.
//! The logic is `kms_rotation_guard::runbook::watch`.
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::error::{ErrorClass, Failed};
use kms_rotation_guard::runbook::watch::{self, SnsTopic, WatchSettings};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_rotation_guard::aws::prefer_single_ca_bundle();
    kms_rotation_guard::logging::init_json();
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let settings = WatchSettings {
        topic_arn: get("KRG_ALERT_TOPIC_ARN")
            .ok_or("KRG_ALERT_TOPIC_ARN is not set: the watcher has nowhere to alert")?,
        guard_value: get("KRG_KEY_TAG_VALUE"),
        rotation_tag_key: get("KRG_ROTATION_TAG_KEY").unwrap_or_else(|| "LastRotationDate".into()),
    };
    let aws = Aws::from_env().await;
    let (aws, settings) = (&aws, &settings);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        let sink = SnsTopic { aws, topic_arn: settings.topic_arn.clone() };
        // A failure fails the invocation with its stable errorType; Lambda retries the
        // asynchronous event, then keeps it in the dead-letter queue.
        // Boxed: the future nests deep enough to overflow rustc's layout queries otherwise.
        let handled =
            Box::pin(watch::handle(aws, settings, &sink, &ev.payload, chrono::Utc::now())).await.map_err(|e| {
                let failed = Failed::of(&e);
                failed.log();
                Diagnostic::from(failed)
            })?;
        serde_json::to_value(handled).map_err(|e| Diagnostic::from(Failed::new(ErrorClass::Internal, e)))
    }))
    .await
}
