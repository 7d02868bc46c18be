//! The Lambda side: runtime loop, logging, one shared `Aws` per process.
//!
//! Glue only: what is compliant is decided in `handler`, what to rotate in `remediation`;
//! this module reads the remediation function's settings and maps outcomes and errors to the
//! Runtime API.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

use crate::aws::Aws;
use crate::error::Failed;
use crate::remediation::usage::Usage;
use crate::remediation::{Admission, Outcome, RemediationError, Requester, Scope, SecurityPolicy};
// The request contract lives with the remediation; kept here under its old path too.
pub use crate::remediation::{RemediationAction, RemediationRequest, ValidRequest};
use crate::rotation::hsm::{HsmPin, KeyMaterialSource, Pkcs11Source, WrappingAlgorithm, WrappingKeySpec};
use crate::rotation::{ReimportRequest, RotationError, RotationRequest, Rotator};
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
    // Keys' tags and rotations kept across warm invocations (key::cache); 0 turns it off.
    let ttl = match std::env::var("KRG_KEY_FACTS_TTL_SECONDS") {
        Err(_) => crate::key::cache::DEFAULT_TTL,
        Ok(v) => v.trim().parse::<u64>().map(std::time::Duration::from_secs).map_err(|_| {
            format!("KRG_KEY_FACTS_TTL_SECONDS must be a whole number of seconds (0 turns the cache off), not {v:?}")
        })?,
    };
    crate::key::cache::enable_for_process(ttl);
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
    /// The security account's policy (KRG_MAX_KEY_AGE_DAYS, …; remediation::policy), or why
    /// its variables are wrong.
    pub policy: Result<SecurityPolicy, String>,
    pub key_tag_value: Option<String>,
    /// KRG_ROTATE_MULTI_REGION: multi-Region primaries may be rotated (security-account.yaml
    /// grants the rights on other Regions' replicas only then).
    pub rotate_multi_region: bool,
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
        let policy = SecurityPolicy::from_lookup(get);
        RemediationSettings {
            policy,
            hsm: get("KRG_HSM"),
            module: get("KRG_PKCS11_MODULE"),
            token_label: get("KRG_TOKEN_LABEL"),
            pin_secret_arn: get("KRG_PIN_SECRET_ARN"),
            env_pin_present: get("KRG_PKCS11_PIN").is_some(),
            key_tag_value: get("KRG_KEY_TAG_VALUE"),
            rotate_multi_region: get("KRG_ROTATE_MULTI_REGION").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
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
        if let Err(e) = &self.policy {
            return Err(RemediationError::InvalidSettings(format!("the security account's policy: {e}")));
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

/// One remediation: who asks (the transport), the payload, the settings, the security
/// account's policy, then the gate and the rotation. Every remediation writes one audit line
/// (`{"audit":"remediation","outcome":…}`, security-account.yaml's metric filters count it).
///
/// A key that does not need rotating is a success, `{"status":"skipped","reason":…}`;
/// a rotation answers `{"status":"rotated",…record}`; a request the policy does not allow
/// is the error `RemediationRefused`, before any write. The Lambda never forces.
pub async fn remediate(aws: &Aws, settings: &RemediationSettings, payload: Value) -> Result<Value, RemediationError> {
    let mut audit = Audit::default();
    let result = remediate_audited(aws, settings, payload, &mut audit).await;
    audit.log(&result);
    result
}

/// What the audit line says besides the outcome.
#[derive(Default)]
struct Audit {
    requester: Option<String>,
    key: Option<String>,
    resource: Option<String>,
    usage: Option<Usage>,
}

impl Audit {
    fn log(&self, result: &Result<Value, RemediationError>) {
        let (outcome, reason) = match result {
            Ok(v) => (
                v["status"].as_str().unwrap_or("skipped").to_string(),
                v["reason"].as_str().unwrap_or_default().to_string(),
            ),
            Err(e @ (RemediationError::Refused(_) | RemediationError::MalformedPayload(_))) => {
                ("refused".to_string(), e.to_string())
            }
            Err(e) => ("failed".to_string(), e.to_string()),
        };
        let dash = || "-".to_string();
        tracing::info!(
            audit = crate::remediation::AUDIT,
            outcome = %outcome,
            requester = %self.requester.clone().unwrap_or_else(dash),
            key = %self.key.clone().unwrap_or_else(dash),
            resource = %self.resource.clone().unwrap_or_else(dash),
            usage = self.usage.as_ref().map(Usage::label).unwrap_or("-"),
            reason = %reason,
            "remediation {outcome}"
        );
    }
}

async fn remediate_audited(
    aws: &Aws,
    settings: &RemediationSettings,
    payload: Value,
    audit: &mut Audit,
) -> Result<Value, RemediationError> {
    // Who asks, as far as a malformed event still says (the envelope's account is
    // EventBridge's); replaced by the checked requester below.
    audit.requester = Some(if crate::remediation::is_bus_event(&payload) {
        let account = payload.get("account").and_then(Value::as_str).unwrap_or("-");
        crate::error::truncate_chars(account, 20)
    } else {
        "operator".into()
    });
    let (who, payload) = crate::remediation::incoming(payload)?;
    audit.requester = Some(match &who {
        Requester::Workload { account } => account.clone(),
        Requester::Operator => "operator".into(),
    });
    let req = RemediationRequest::parse(payload)?;
    audit.key = Some(req.key_id.clone()).filter(|k| !k.is_empty());
    audit.resource = req.resource_id.clone();
    settings.validate()?;
    let policy = settings.policy.as_ref().map_err(|e| RemediationError::InvalidSettings(e.clone()))?;
    // What the security account's policy lets this requester ask: refused before any read.
    let admitted = crate::remediation::policy::admit(policy, &who, &req.ask())
        .map_err(|refusal| RemediationError::Refused(refusal.0))?;
    for note in &admitted.notes {
        tracing::info!(key = %req.key_id, note = %note, "request and policy");
    }
    if let RemediationAction::Reimport { key_material_id } = &req.action {
        // Restores material KMS lost (expired, or deleted): no rotation, no quota spent, and
        // only material the HSM kept can be imported again. The policy let only an operator here.
        let source = settings.source(aws).await?;
        let request = ReimportRequest {
            key: req.key_id.clone(),
            key_material_id: key_material_id.clone(),
            dry_run: false,
            expiry: None,
        };
        let report = Rotator::new(aws, source).reimport(&request).await?;
        let mut out = serde_json::to_value(&report).map_err(|e| RemediationError::Refused(e.to_string()))?;
        out["status"] = json!("reimported");
        out["reason"] =
            json!(format!("re-import of {}", key_material_id.as_deref().unwrap_or("every material that needs it")));
        return Ok(out);
    }
    let skipped = |reason: String| {
        Ok(json!({ "status": "skipped", "keyId": req.key_id, "resourceId": req.resource_id, "reason": reason }))
    };
    if let Some(reason) = crate::remediation::finding_check(&req.key_id, req.resource_kind, admitted.strategy) {
        return skipped(reason);
    }
    let params = admitted.params;
    let request = RotationRequest {
        strategy: admitted.strategy,
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
    let scope = Scope {
        caller: match &who {
            Requester::Workload { account } => Some(account.clone()),
            Requester::Operator => None,
        },
        min_rotations_left: policy.min_rotations_left,
        multi_region: settings.rotate_multi_region,
    };
    let (key_arn, reason) = match crate::remediation::admit(aws, &request, &params, &scope).await? {
        Admission::Skip(reason) => return skipped(reason),
        Admission::Due { key_arn, reason, usage } => {
            audit.usage = usage;
            (key_arn, reason)
        }
    };
    audit.key = Some(key_arn.clone());
    // Only a key that is due needs the PIN and the HSM.
    let source = settings.source(aws).await?;
    let rotator = Rotator::new(aws, source);
    let claim_id = crate::remediation::new_claim_id();
    let settle = settings.claim_settle;
    match crate::remediation::rotate_admitted(
        aws, &rotator, &request, &params, &scope, &key_arn, &reason, &claim_id, settle,
    )
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

/// The function's answer to the runtime. A workload's request arrives asynchronously (the
/// request rule): a refusal, or a malformed request, cannot change on a retry, so it is
/// answered as a success, `{"status":"refused",…}` (the audit line and the alarm carry it),
/// while every other failure fails the invocation so Lambda retries it and then keeps it
/// in the request dead-letter queue. An operator's direct invocation sees every failure.
pub fn answer(from_bus: bool, result: Result<Value, RemediationError>) -> Result<Value, Failed> {
    match result {
        Err(e @ (RemediationError::Refused(_) | RemediationError::MalformedPayload(_))) if from_bus => {
            Ok(json!({ "status": "refused", "errorType": e.error_type(), "reason": e.to_string() }))
        }
        Err(e) => Err(Failed::of(&e)),
        Ok(v) => Ok(v),
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
        async move {
            let from_bus = crate::remediation::is_bus_event(&ev.payload);
            answer(from_bus, remediate(&aws, &settings, ev.payload).await)
        }
    })
    .await
}
