//! The Lambda side: runtime loop, logging, one shared `Aws` per process.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

use crate::aws::Aws;
use crate::error::{ErrorClass, Failed};
use crate::rule::Rule;

/// Serves invocations until the runtime stops. Each failure is logged once, at ERROR with
/// its errorType (lambda_runtime's own repeat of it is filtered in `logging`), and reaches
/// the Runtime API as a `Diagnostic` with that stable errorType.
async fn serve<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(LambdaEvent<Value>) -> Fut,
    Fut: Future<Output = Result<Value, Failed>> + Send + 'static,
{
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        // Boxed: the handler's future nests deep enough to overflow rustc's layout queries
        // inside lambda_runtime's layers.
        let run: std::pin::Pin<Box<dyn Future<Output = Result<Value, Failed>> + Send>> = Box::pin(handler(ev));
        async move {
            run.await.map_err(|failed| {
                failed.log();
                Diagnostic::from(failed)
            })
        }
    }))
    .await
}

/// Runs a rule handler until the runtime stops it. Clients are built on first use, so
/// start-up does no work the first event does not need.
pub async fn run_rule(rule: Rule) -> Result<(), lambda_runtime::Error> {
    crate::aws::prefer_single_ca_bundle();
    crate::logging::init_json();
    let aws = Arc::new(Aws::from_env().await);
    serve(move |ev: LambdaEvent<Value>| {
        let aws = aws.clone();
        async move {
            let deadline = tokio::time::Instant::now()
                + ev.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
            // Failing the invocation makes Config retry; the cause goes to the log.
            let outcome = crate::handler::handle(&aws, rule, ev.payload, chrono::Utc::now(), Some(deadline))
                .await
                .map_err(|e| Failed::of(&e))?;
            Ok(json!({ "evaluations": outcome.evaluations.len() }))
        }
    })
    .await
}

/// What the SSM Automation document sends (see security-account.yaml).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemediationRequest {
    /// Alias, alias ARN, key id or key ARN of the key to rotate.
    pub key_id: String,
    /// The non-compliant resource, for the audit log only.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// `in-place` (default) or `alias-swap`.
    #[serde(default)]
    pub strategy: Option<String>,
}

/// Settings of the remediation function, from its environment (template: security-account.yaml).
struct RemediationSettings {
    module: String,
    token_label: String,
    pin_secret_arn: Option<String>,
    allow_alias_swap: bool,
    key_tag_value: Option<String>,
    date_tag: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl RemediationSettings {
    fn from_env() -> Result<Self, lambda_runtime::Error> {
        if env("KRG_HSM").as_deref().unwrap_or("pkcs11") != "pkcs11" {
            // The software source exists for development; Lambda rotates only from an HSM.
            return Err("KRG_HSM must be pkcs11: the remediation function only rotates with an HSM".into());
        }
        Ok(RemediationSettings {
            module: env("KRG_PKCS11_MODULE")
                .ok_or("KRG_PKCS11_MODULE is not set (path of the HSM's PKCS#11 library)")?,
            token_label: env("KRG_TOKEN_LABEL").ok_or("KRG_TOKEN_LABEL is not set")?,
            pin_secret_arn: env("KRG_PIN_SECRET_ARN"),
            allow_alias_swap: env("KRG_ALLOW_ALIAS_SWAP").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            key_tag_value: env("KRG_KEY_TAG_VALUE"),
            date_tag: env("KRG_ROTATION_TAG_KEY").unwrap_or_else(|| crate::rotation::DATE_TAG.into()),
        })
    }

    /// The PIN from Secrets Manager (KRG_PIN_SECRET_ARN), else KRG_PKCS11_PIN.
    async fn pin(&self, aws: &Aws) -> Result<crate::rotation::hsm::HsmPin, lambda_runtime::Error> {
        if let Some(arn) = &self.pin_secret_arn {
            let client = aws_sdk_secretsmanager::Client::new(aws.sdk_config());
            let out =
                client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
                    format!("cannot read the HSM PIN secret {arn}: {}", crate::aws::classify(&e).message)
                })?;
            let pin = out.secret_string().ok_or("the HSM PIN secret has no SecretString")?;
            return Ok(crate::rotation::hsm::HsmPin::new(pin.trim()));
        }
        let pin = env("KRG_PKCS11_PIN").ok_or("set KRG_PIN_SECRET_ARN (or KRG_PKCS11_PIN) for the HSM PIN")?;
        Ok(crate::rotation::hsm::HsmPin::new(pin))
    }
}

/// Runs the rotation remediation: one rotation per invocation, the HSM session opened on
/// first use and kept for the life of the process.
pub async fn run_remediation() -> Result<(), lambda_runtime::Error> {
    use crate::rotation::{hsm::Pkcs11Source, RotationRequest, Rotator, Strategy};
    crate::aws::prefer_single_ca_bundle();
    crate::logging::init_json();
    let aws = Arc::new(Aws::from_env().await);
    let source: Arc<tokio::sync::OnceCell<Pkcs11Source>> = Arc::new(tokio::sync::OnceCell::new());
    serve(move |ev: LambdaEvent<Value>| {
        let (aws, source) = (aws.clone(), source.clone());
        async move {
            // The payload first: a bad payload is reported as such, whatever the settings.
            let invalid = |e: &dyn std::fmt::Display| {
                let what = "bad remediation request (expected keyId, resourceId, strategy)";
                Failed::new(ErrorClass::InvalidRequest, format!("{what}: {e}"))
            };
            let req: RemediationRequest = serde_json::from_value(ev.payload).map_err(|e| invalid(&e))?;
            let strategy: Strategy = req.strategy.as_deref().unwrap_or("in-place").parse().map_err(|e| invalid(&e))?;
            let settings = RemediationSettings::from_env().map_err(|e| Failed::new(ErrorClass::Configuration, e))?;
            if strategy == Strategy::AliasSwap && !settings.allow_alias_swap {
                let why = "alias-swap is not allowed here (KRG_ALLOW_ALIAS_SWAP is not true)";
                return Err(Failed::new(ErrorClass::RemediationRefused, why));
            }
            let source = source
                .get_or_try_init(|| async {
                    let pin = settings.pin(&aws).await.map_err(|e| Failed::new(ErrorClass::Configuration, e))?;
                    Pkcs11Source::open(&settings.module, &settings.token_label, &pin).map_err(|e| Failed::of(&e))
                })
                .await?;
            let request = RotationRequest {
                strategy,
                date_tag: settings.date_tag.clone(),
                required_tag: settings.key_tag_value.clone().map(|v| ("kms-rotation-guard".to_string(), v)),
                ..RotationRequest::new(req.key_id.trim())
            };
            let resource = req.resource_id.as_deref().unwrap_or("-");
            tracing::info!(key = %request.key, resource, %strategy, "remediation requested");
            let (_, record) = Rotator::new(&aws, source).rotate(&request).await.map_err(|e| Failed::of(&e))?;
            serde_json::to_value(record).map_err(|e| Failed::new(ErrorClass::Internal, e))
        }
    })
    .await
}
