//! The Lambda side: runtime loop, logging, one shared `Aws` per process.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

use crate::aws::Aws;
use crate::rule::Rule;

/// Logs as JSON lines (Lambda's structured logging); `RUST_LOG` sets the level.
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).without_time().try_init();
}

/// Runs a rule handler until the runtime stops it. Clients are built on first use, so
/// start-up does no work the first event does not need.
pub async fn run_rule(rule: Rule) -> Result<(), lambda_runtime::Error> {
    init_json_logs();
    let aws = Arc::new(Aws::from_env().await);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let aws = aws.clone();
        async move {
            let deadline = tokio::time::Instant::now()
                + ev.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
            match crate::handler::handle(&aws, rule, ev.payload, chrono::Utc::now(), Some(deadline)).await {
                Ok(o) => Ok::<_, lambda_runtime::Error>(json!({ "evaluations": o.evaluations.len() })),
                Err(e) => {
                    // Failing the invocation makes Config retry; the cause goes to the log.
                    tracing::error!(error = %e, transient = e.is_transient(), "evaluation failed");
                    Err(e.into())
                }
            }
        }
    }))
    .await
}
