//! The Lambda side: runtime loop, logging, one shared `Aws` per process.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

use crate::aws::Aws;
use crate::error::Failed;
use crate::remediation::{Admission, Outcome, RemediationError};
// The request contract lives with the remediation; kept here under its old path too.
pub use crate::remediation::{RemediationAction, RemediationRequest, ValidRequest};
use crate::rotation::hsm::{HsmPin, KeyMaterialSource, Pkcs11Source, WrappingAlgorithm, WrappingKeySpec};
use crate::rotation::{ReimportRequest, RotationError, RotationRequest, Rotator, Strategy};
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
    // Organization variant (template.yaml): the one role this function enters member
    // accounts with. Member credentials are cached in `aws` across warm invocations.
    let execution_role: Option<Arc<str>> =
        std::env::var("KRG_EXECUTION_ROLE_NAME").ok().filter(|v| !v.trim().is_empty()).map(|v| v.trim().into());
    serve(move |ev: LambdaEvent<Value>| {
        let (aws, execution_role) = (aws.clone(), execution_role.clone());
        async move {
            let deadline = tokio::time::Instant::now()
                + ev.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
            // Failing the invocation makes Config retry; the cause goes to the log.
            let now = chrono::Utc::now();
            let outcome =
                crate::handler::handle_as(&aws, rule, ev.payload, now, Some(deadline), execution_role.as_deref())
                    .await
                    .map_err(|e| Failed::of(&e))?;
            Ok(json!({ "evaluations": outcome.evaluations.len() }))
        }
    })
    .await
}

/// Settings of the remediation function, from its environment (security-account.yaml).
/// Read as given and validated by [`remediate`] after the payload, so that a bad payload is
/// reported as such even on a misconfigured function.
pub struct RemediationSettings {
    pub hsm: Option<String>,
    pub module: Option<String>,
    pub token_label: Option<String>,
    pub pin_secret_arn: Option<String>,
    /// Set only to be refused: the function never reads a PIN from its environment.
    pub env_pin_present: bool,
    pub allow_alias_swap: bool,
    pub key_tag_value: Option<String>,
    pub date_tag: Option<String>,
    pub wrapping_algorithm: Option<String>,
    pub wrapping_key_spec: Option<String>,
    /// How long a claim settles before it is read back (KRG_CLAIM_SETTLE_MS).
    pub claim_settle: std::time::Duration,
    source: tokio::sync::OnceCell<&'static dyn KeyMaterialSource>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl RemediationSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(env)
    }

    /// From any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |n: &str| get(n).filter(|v| !v.trim().is_empty());
        RemediationSettings {
            hsm: get("KRG_HSM"),
            module: get("KRG_PKCS11_MODULE"),
            token_label: get("KRG_TOKEN_LABEL"),
            pin_secret_arn: get("KRG_PIN_SECRET_ARN"),
            env_pin_present: get("KRG_PKCS11_PIN").is_some(),
            allow_alias_swap: get("KRG_ALLOW_ALIAS_SWAP").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            key_tag_value: get("KRG_KEY_TAG_VALUE"),
            date_tag: get("KRG_ROTATION_TAG_KEY"),
            wrapping_algorithm: get("KRG_WRAPPING_ALGORITHM"),
            wrapping_key_spec: get("KRG_WRAPPING_KEY_SPEC"),
            claim_settle: get("KRG_CLAIM_SETTLE_MS")
                .and_then(|v| v.trim().parse().ok())
                .map(std::time::Duration::from_millis)
                .unwrap_or(crate::remediation::DEFAULT_CLAIM_SETTLE),
            source: tokio::sync::OnceCell::new(),
        }
    }

    /// Uses this key-material source instead of opening the PKCS#11 module (tests: SoftHSM).
    pub fn with_source(self, source: &'static dyn KeyMaterialSource) -> Self {
        let _ = self.source.set(source);
        self
    }

    /// Every setting the function needs, with the variable to fix named.
    pub fn validate(&self) -> Result<(), RemediationError> {
        let bad = |m: &str| Err(RemediationError::InvalidSettings(m.to_string()));
        if self.hsm.as_deref().unwrap_or("pkcs11") != "pkcs11" {
            // The software source exists for development; Lambda rotates only from an HSM.
            return bad("KRG_HSM must be pkcs11: the remediation function only rotates with an HSM");
        }
        if self.module.is_none() {
            return bad("KRG_PKCS11_MODULE is not set (path of the HSM's PKCS#11 library)");
        }
        if self.token_label.is_none() {
            return bad("KRG_TOKEN_LABEL is not set (label of the HSM token)");
        }
        if self.env_pin_present {
            return bad("KRG_PKCS11_PIN is set: the remediation function reads the HSM PIN only from Secrets Manager \
                 (KRG_PIN_SECRET_ARN); remove the variable, a PIN in the environment is visible to anyone who \
                 can read the function's configuration");
        }
        if self.pin_secret_arn.is_none() {
            return bad("KRG_PIN_SECRET_ARN is not set: the HSM PIN is read only from that Secrets Manager secret");
        }
        if let Some(a) = &self.wrapping_algorithm {
            a.parse::<WrappingAlgorithm>()
                .map_err(|e| RemediationError::InvalidSettings(format!("KRG_WRAPPING_ALGORITHM: {e}")))?;
        }
        if let Some(s) = &self.wrapping_key_spec {
            s.parse::<WrappingKeySpec>()
                .map_err(|e| RemediationError::InvalidSettings(format!("KRG_WRAPPING_KEY_SPEC: {e}")))?;
        }
        Ok(())
    }

    /// The PIN from Secrets Manager (KRG_PIN_SECRET_ARN); there is no other source.
    async fn pin(&self, aws: &Aws) -> Result<HsmPin, RemediationError> {
        let arn = self
            .pin_secret_arn
            .as_deref()
            .ok_or_else(|| RemediationError::InvalidSettings("KRG_PIN_SECRET_ARN is not set".into()))?;
        let client = aws_sdk_secretsmanager::Client::new(aws.sdk_config());
        let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| {
            let f = crate::aws::classify(&e);
            let message = format!("cannot read the HSM PIN secret {arn}: {}", f.message);
            match f.kind {
                crate::aws::FailureKind::Denied => {
                    RemediationError::AccessDenied { operation: "secretsmanager:GetSecretValue".into(), message }
                }
                kind => RemediationError::Aws {
                    operation: "secretsmanager:GetSecretValue",
                    transient: kind == crate::aws::FailureKind::Transient,
                    message,
                },
            }
        })?;
        let pin = out.secret_string().ok_or_else(|| {
            RemediationError::InvalidSettings(format!("the HSM PIN secret {arn} has no SecretString"))
        })?;
        Ok(HsmPin::new(pin.trim()))
    }

    /// The HSM session, opened on first use and kept for the life of the process.
    async fn source(&self, aws: &Aws) -> Result<&'static dyn KeyMaterialSource, RemediationError> {
        self.source
            .get_or_try_init(|| async {
                let pin = self.pin(aws).await?;
                let module = self.module.as_deref().unwrap_or_default();
                let label = self.token_label.as_deref().unwrap_or_default();
                let source = Pkcs11Source::open(module, label, &pin).map_err(RotationError::from)?;
                // One session per process, like the SDK clients: never dropped before exit.
                Ok::<&'static dyn KeyMaterialSource, RemediationError>(Box::leak(Box::new(source)))
            })
            .await
            .copied()
    }
}

/// One remediation: validate the payload, then the settings, then gate and rotate.
///
/// A key that does not need rotating is a success, `{"status":"skipped","reason":…}`;
/// a rotation answers `{"status":"rotated",…record}`. The Lambda never forces.
pub async fn remediate(aws: &Aws, settings: &RemediationSettings, payload: Value) -> Result<Value, RemediationError> {
    let req = RemediationRequest::parse(payload)?;
    settings.validate()?;
    let resource = req.resource_id.as_deref().unwrap_or("-");
    if let RemediationAction::Reimport { key_material_id } = &req.action {
        // Restores material KMS lost (expired, or deleted): no rotation, no quota spent, and
        // only material the HSM kept can be imported again.
        let source = settings.source(aws).await?;
        let request = ReimportRequest {
            key: req.key_id.clone(),
            key_material_id: key_material_id.clone(),
            dry_run: false,
            expiry: None,
        };
        tracing::info!(key = %request.key, resource, material = key_material_id.as_deref().unwrap_or("all pending"), "re-import requested");
        let report = Rotator::new(aws, source).reimport(&request).await?;
        let mut out = serde_json::to_value(&report).map_err(|e| RemediationError::Refused(e.to_string()))?;
        out["status"] = json!("reimported");
        return Ok(out);
    }
    let skipped = |reason: String| {
        tracing::info!(key = %req.key_id, resource, reason = %reason, "remediation skipped");
        Ok(json!({ "status": "skipped", "keyId": req.key_id, "resourceId": req.resource_id, "reason": reason }))
    };
    if let Some(reason) = crate::remediation::finding_check(&req.key_id, req.resource_kind, req.strategy) {
        return skipped(reason);
    }
    if req.strategy == Strategy::AliasSwap && !settings.allow_alias_swap {
        return Err(RemediationError::Refused(
            "alias-swap is not allowed here (KRG_ALLOW_ALIAS_SWAP is not true): it is an operator's break-glass \
             path"
                .into(),
        ));
    }
    let mut params = req.params.clone();
    if !req.tag_key_given {
        if let Some(t) = &settings.date_tag {
            params.rotation_tag_key = t.clone();
        }
    }
    let request = RotationRequest {
        strategy: req.strategy,
        date_tag: params.rotation_tag_key.clone(),
        required_tag: settings.key_tag_value.clone().map(|v| ("kms-rotation-guard".to_string(), v)),
        wrapping_algorithm: settings.wrapping_algorithm.as_deref().map(str::parse).transpose().ok().flatten(),
        wrapping_key_spec: settings
            .wrapping_key_spec
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(WrappingKeySpec::Rsa4096),
        ..RotationRequest::new(req.key_id.clone())
    };
    tracing::info!(key = %request.key, resource, strategy = %req.strategy, "remediation requested");
    let (key_arn, reason) = match crate::remediation::admit(aws, &request, &params).await? {
        Admission::Skip(reason) => return skipped(reason),
        Admission::Due { key_arn, reason } => (key_arn, reason),
    };
    // Only a key that is due needs the PIN and the HSM.
    let source = settings.source(aws).await?;
    let rotator = Rotator::new(aws, source);
    let claim_id = crate::remediation::new_claim_id();
    let settle = settings.claim_settle;
    match crate::remediation::rotate_admitted(aws, &rotator, &request, &params, &key_arn, &reason, &claim_id, settle)
        .await?
    {
        Outcome::Skipped(reason) => skipped(reason),
        Outcome::Rotated { reason, record } => {
            let mut out = serde_json::to_value(record).map_err(|e| RemediationError::Refused(e.to_string()))?;
            out["status"] = json!("rotated");
            out["reason"] = json!(reason);
            out["resourceId"] = json!(req.resource_id);
            Ok(out)
        }
        Outcome::Planned { reason, .. } => skipped(format!("dry run: {reason}")),
    }
}

/// Runs the rotation remediation until the runtime stops it. The HSM session is opened on
/// first use and kept for the life of the process.
pub async fn run_remediation() -> Result<(), lambda_runtime::Error> {
    crate::aws::prefer_single_ca_bundle();
    crate::logging::init_json();
    let aws = Arc::new(Aws::from_env().await);
    let settings = Arc::new(RemediationSettings::from_env());
    serve(move |ev: LambdaEvent<Value>| {
        let (aws, settings) = (aws.clone(), settings.clone());
        async move { remediate(&aws, &settings, ev.payload).await.map_err(|e| Failed::of(&e)) }
    })
    .await
}
