//! One SDK configuration and one client per service, per process: built on first use and
//! reused across Lambda invocations. Retries with backoff are the SDK's standard mode;
//! here we only decide what a failure that survived them means.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::Error;

/// Shared AWS access for one process.
#[derive(Debug)]
pub struct Aws {
    config: SdkConfig,
    counter: Option<CallCounter>,
    extra: Vec<SharedInterceptor>,
    /// Per-service endpoints (`kms`, `sts`, …), like `AWS_ENDPOINT_URL_<SERVICE>` does for
    /// configurations loaded from the environment.
    endpoints: BTreeMap<&'static str, String>,
    kms: OnceLock<aws_sdk_kms::Client>,
    sts: OnceLock<aws_sdk_sts::Client>,
    config_service: OnceLock<aws_sdk_config::Client>,
    rds: OnceLock<aws_sdk_rds::Client>,
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
    s3: OnceLock<aws_sdk_s3::Client>,
    cloudtrail: OnceLock<aws_sdk_cloudtrail::Client>,
    ssm: OnceLock<aws_sdk_ssm::Client>,
    sns: OnceLock<aws_sdk_sns::Client>,
    /// KMS clients acting as an assumed role, by role ARN, with the credentials' expiry:
    /// warm invocations reuse them instead of calling sts:AssumeRole each time.
    assumed: Mutex<BTreeMap<String, (aws_sdk_kms::Client, SystemTime)>>,
}

/// Assumed-role credentials are renewed this long before they expire: Lambda's longest
/// timeout (900 s), so credentials taken at the start of an invocation outlive it.
pub const CREDENTIAL_RENEWAL_MARGIN: Duration = Duration::from_secs(15 * 60);

/// System CA bundles, one file each: Amazon Linux (provided.al2023, the RHEL layout) first,
/// then Debian/Ubuntu.
const CA_BUNDLES: [&str; 3] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// The CA bundle a Lambda should trust, unless the operator chose one: `None` when
/// `SSL_CERT_FILE` or `SSL_CERT_DIR` is set, or no known bundle exists.
pub fn single_ca_bundle(var: impl Fn(&str) -> Option<String>, exists: impl Fn(&str) -> bool) -> Option<&'static str> {
    if var("SSL_CERT_FILE").is_some() || var("SSL_CERT_DIR").is_some() {
        return None;
    }
    CA_BUNDLES.into_iter().find(|p| exists(p))
}

/// Cold start: without SSL_CERT_FILE the SDK's rustls loads the system bundle *and* every
/// file of the certificate directories (on Debian ~300 files; on provided.al2023 the
/// bundle again through /etc/ssl/certs and /etc/pki/tls/certs), before the first poll of
/// the Runtime API. Pointing it at the one bundle file trusts the same roots for less than
/// half the work (scripts/bench prints both). TLS verification is unchanged. Call it
/// before any thread starts (the Lambda binaries run a current-thread runtime).
pub fn prefer_single_ca_bundle() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(bundle) = single_ca_bundle(var, |p| std::path::Path::new(p).is_file()) {
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}

/// Every call gets a connect and an operation timeout, so a hung endpoint becomes a
/// retried, then failed, call, never a Lambda killed mid-report.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(40))
        .build()
}

impl Aws {
    /// Standard AWS configuration: environment, profiles, `AWS_ENDPOINT_URL[_<SERVICE>]`.
    /// `AWS_MAX_ATTEMPTS` overrides the retry budget (default 5 attempts, standard mode).
    pub async fn from_env() -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(5));
        }
        Aws::new(loader.load().await)
    }

    pub fn new(config: SdkConfig) -> Aws {
        Aws {
            config,
            counter: None,
            extra: Vec::new(),
            endpoints: BTreeMap::new(),
            kms: OnceLock::new(),
            sts: OnceLock::new(),
            config_service: OnceLock::new(),
            rds: OnceLock::new(),
            dynamodb: OnceLock::new(),
            s3: OnceLock::new(),
            cloudtrail: OnceLock::new(),
            ssm: OnceLock::new(),
            sns: OnceLock::new(),
            assumed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts every request attempt by operation (tests and the benchmark).
    pub fn with_counter(mut self, counter: CallCounter) -> Aws {
        self.counter = Some(counter);
        self
    }

    /// Sends one service's calls to another endpoint (e.g. KMS in another emulator).
    pub fn with_service_endpoint(mut self, service: &'static str, url: impl Into<String>) -> Aws {
        self.endpoints.insert(service, url.into());
        self
    }

    fn endpoint(&self, service: &str) -> Option<String> {
        self.endpoints.get(service).cloned()
    }

    /// Adds an interceptor to every client (tests observe requests with it).
    pub fn with_interceptor(mut self, interceptor: impl Intercept + 'static) -> Aws {
        self.extra.push(SharedInterceptor::new(interceptor));
        self
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    pub fn region(&self) -> String {
        self.config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into())
    }

    fn interceptors(&self) -> impl Iterator<Item = SharedInterceptor> + '_ {
        self.counter.clone().map(SharedInterceptor::new).into_iter().chain(self.extra.iter().cloned())
    }

    pub fn kms(&self) -> &aws_sdk_kms::Client {
        self.kms.get_or_init(|| self.kms_with(None))
    }

    /// A KMS client acting with other credentials (an assumed key-reader role).
    pub fn kms_with(&self, credentials: Option<aws_sdk_kms::config::Credentials>) -> aws_sdk_kms::Client {
        let mut b = aws_sdk_kms::config::Builder::from(&self.config);
        if let Some(url) = self.endpoint("kms") {
            b = b.endpoint_url(url);
        }
        if let Some(c) = credentials {
            b = b.credentials_provider(c);
        }
        for i in self.interceptors() {
            b.push_interceptor(i);
        }
        aws_sdk_kms::Client::from_conf(b.build())
    }

    /// A KMS client for another Region (multi-Region replica keys), with this one's
    /// credentials, endpoint override and interceptors.
    pub fn kms_in_region(&self, region: &str) -> aws_sdk_kms::Client {
        let mut b = aws_sdk_kms::config::Builder::from(&self.config)
            .region(aws_sdk_kms::config::Region::new(region.to_owned()));
        if let Some(url) = self.endpoint("kms") {
            b = b.endpoint_url(url);
        }
        for i in self.interceptors() {
            b.push_interceptor(i);
        }
        aws_sdk_kms::Client::from_conf(b.build())
    }

    /// A KMS client acting as `role_arn`, from the process-wide cache while its credentials
    /// have more than [`CREDENTIAL_RENEWAL_MARGIN`] left, else from a new sts:AssumeRole.
    pub async fn kms_as_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> Result<aws_sdk_kms::Client, SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>> {
        let fresh = |expiry: &SystemTime| {
            expiry.duration_since(SystemTime::now()).is_ok_and(|left| left > CREDENTIAL_RENEWAL_MARGIN)
        };
        if let Some((client, _)) =
            self.assumed.lock().ok().and_then(|m| m.get(role_arn).cloned()).filter(|(_, e)| fresh(e))
        {
            return Ok(client);
        }
        let out = self.sts().assume_role().role_arn(role_arn).role_session_name(session_name).send().await?;
        let Some(c) = out.credentials() else {
            // AWS always returns credentials with a 200; never cache a response without them.
            return Err(SdkError::construction_failure("sts:AssumeRole returned no credentials"));
        };
        let expiry = SystemTime::try_from(*c.expiration()).unwrap_or(SystemTime::UNIX_EPOCH);
        let creds = aws_sdk_kms::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "kms-rotation-guard-assumed-role",
        );
        let client = self.kms_with(Some(creds));
        if let Ok(mut m) = self.assumed.lock() {
            m.insert(role_arn.to_string(), (client.clone(), expiry));
        }
        Ok(client)
    }

    pub fn sts(&self) -> &aws_sdk_sts::Client {
        self.sts.get_or_init(|| {
            let mut b = aws_sdk_sts::config::Builder::from(&self.config);
            if let Some(url) = self.endpoint("sts") {
                b = b.endpoint_url(url);
            }
            for i in self.interceptors() {
                b.push_interceptor(i);
            }
            aws_sdk_sts::Client::from_conf(b.build())
        })
    }

    pub fn config_service(&self) -> &aws_sdk_config::Client {
        self.config_service.get_or_init(|| {
            let mut b = aws_sdk_config::config::Builder::from(&self.config);
            if let Some(url) = self.endpoint("config") {
                b = b.endpoint_url(url);
            }
            for i in self.interceptors() {
                b.push_interceptor(i);
            }
            aws_sdk_config::Client::from_conf(b.build())
        })
    }

    pub fn rds(&self) -> &aws_sdk_rds::Client {
        self.rds.get_or_init(|| {
            let mut b = aws_sdk_rds::config::Builder::from(&self.config);
            if let Some(url) = self.endpoint("rds") {
                b = b.endpoint_url(url);
            }
            for i in self.interceptors() {
                b.push_interceptor(i);
            }
            aws_sdk_rds::Client::from_conf(b.build())
        })
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        self.dynamodb.get_or_init(|| {
            let mut b = aws_sdk_dynamodb::config::Builder::from(&self.config);
            if let Some(url) = self.endpoint("dynamodb") {
                b = b.endpoint_url(url);
            }
            for i in self.interceptors() {
                b.push_interceptor(i);
            }
            aws_sdk_dynamodb::Client::from_conf(b.build())
        })
    }

    pub fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3.get_or_init(|| {
            let mut b = aws_sdk_s3::config::Builder::from(&self.config);
            if let Some(url) = self.endpoint("s3") {
                b = b.endpoint_url(url);
            }
            // A custom endpoint (an S3-compatible store or an emulator on localhost) cannot
            // take bucket names as host names; AWS itself keeps virtual-hosted style.
            let custom = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].iter().any(|v| std::env::var_os(v).is_some());
            if custom || self.config.endpoint_url().is_some() {
                b = b.force_path_style(true);
            }
            for i in self.interceptors() {
                b.push_interceptor(i);
            }
            aws_sdk_s3::Client::from_conf(b.build())
        })
    }
}

/// The runbook's clients (issue 22): CloudTrail (LookupEvents), SSM (Change Calendar) and SNS
/// (the watcher's alert), built like the others: endpoint override and interceptors included.
macro_rules! runbook_client {
    ($name:ident, $krate:ident, $service:literal) => {
        impl Aws {
            pub fn $name(&self) -> &$krate::Client {
                self.$name.get_or_init(|| {
                    let mut b = $krate::config::Builder::from(&self.config);
                    if let Some(url) = self.endpoint($service) {
                        b = b.endpoint_url(url);
                    }
                    for i in self.interceptors() {
                        b.push_interceptor(i);
                    }
                    $krate::Client::from_conf(b.build())
                })
            }
        }
    };
}
runbook_client!(cloudtrail, aws_sdk_cloudtrail, "cloudtrail");
runbook_client!(ssm, aws_sdk_ssm, "ssm");
runbook_client!(sns, aws_sdk_sns, "sns");

/// What a failed call means for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// IAM or a key policy refused: a finding.
    Denied,
    /// The resource does not exist: a finding for keys, "gone" for resources.
    NotFound,
    /// Throttling, 5xx, timeouts, dropped connections: never a verdict.
    Transient,
    /// The endpoint does not implement the operation (emulators).
    Unsupported,
    /// AWS implements the operation but not for this resource: KMS's
    /// `UnsupportedOperationException`, e.g. ListKeyRotations on a key in a custom key
    /// store. Permanent, and a fact about the resource; kept apart from `Unsupported`.
    NotForThisResource,
    Other,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub code: Option<String>,
    pub message: String,
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "KMSInternalException",
    "DependencyTimeoutException",
];
const DENIED: &[&str] = &["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"];
const NOT_FOUND: &[&str] =
    &["NotFoundException", "NoSuchBucket", "ResourceNotFoundException", "DBInstanceNotFound", "DBClusterNotFoundFault"];
const NOT_FOR_THIS_RESOURCE: &[&str] = &["UnsupportedOperationException"];
const UNSUPPORTED: &[&str] =
    &["NotImplemented", "NotImplementedException", "UnknownOperationException", "InvalidAction"];

/// Classifies a failure the SDK gave up on (its retries are already spent).
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let kind = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => FailureKind::Transient,
        SdkError::ServiceError(_) => {
            let c = code.as_deref().unwrap_or("");
            // 501 first: LocalStack answers unemulated calls with 501 + "InternalFailure",
            // which would otherwise read as a transient AWS fault and fail every run.
            if UNSUPPORTED.contains(&c) || status == Some(501) {
                FailureKind::Unsupported
            } else if THROTTLING.contains(&c) || matches!(status, Some(500 | 502 | 503 | 504 | 429)) {
                FailureKind::Transient
            } else if DENIED.contains(&c) || (c.is_empty() && status == Some(403) && body_names_denial(err)) {
                // moto answers IAM denials on JSON protocols with an XML body the SDK cannot
                // parse; the body still names AccessDenied. A bare 403 or 404 (a proxy, a
                // load balancer) says nothing about the key and must not become a verdict.
                FailureKind::Denied
            } else if NOT_FOUND.contains(&c) {
                FailureKind::NotFound
            } else if NOT_FOR_THIS_RESOURCE.contains(&c) {
                FailureKind::NotForThisResource
            } else {
                FailureKind::Other
            }
        }
        _ => FailureKind::Other,
    };
    let message = match (err, &code) {
        (SdkError::ServiceError(_), Some(c)) => format!("{c}: {}", err.message().unwrap_or("no message")),
        // The class reads the code from the head of the message (error::ErrorClass::of_aws).
        (SdkError::ServiceError(_), None) if kind == FailureKind::Denied => {
            format!("AccessDenied (HTTP {}, named in an unparseable body)", status.unwrap_or(0))
        }
        (SdkError::ServiceError(_), None) => format!("HTTP {}", status.unwrap_or(0)),
        // Each cause's Display, never the Debug dump that DisplayErrorContext appends:
        // the message is read by people (log line, Config's failure view).
        _ => cause_chain(err),
    };
    Failure { kind, code, message }
}

/// "outer: cause: root cause", skipping a cause whose text the outer one already holds.
fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

/// Whether an error body without a parseable code still names an access denial.
fn body_names_denial<E>(err: &SdkError<E, HttpResponse>) -> bool {
    err.raw_response().and_then(|r| r.body().bytes()).is_some_and(|b| b.windows(12).any(|w| w == b"AccessDenied"))
}

impl Failure {
    /// Turns a failure into an invocation error for `operation`.
    pub fn into_error(self, operation: &'static str) -> Error {
        Error::Aws { operation, transient: self.kind == FailureKind::Transient, message: self.message }
    }
}

/// Shorthand: any failure of `operation` fails the invocation.
pub fn fail<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let f = classify(&e);
        // DEBUG only: the invocation fails with this error and logs it once, at ERROR.
        tracing::debug!(operation, kind = ?f.kind, error = %f.message, "AWS call failed");
        f.into_error(operation)
    }
}

/// Counts request attempts by `Service.Operation`, retries included: what the quotas see.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
    pub fn get(&self, op: &str) -> u64 {
        self.snapshot().get(op).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(md) = cfg.load::<Metadata>() {
            // "Config Service" → "config", "KMS" → "kms": the IAM prefix people know.
            let service = md.service().split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            let op = format!("{service}.{}", md.name());
            if let Ok(mut m) = self.0.lock() {
                *m.entry(op).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// SDK timestamps as chrono's.
pub fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_bundle_is_used_only_when_the_operator_chose_none() {
        let none = |_: &str| None;
        let all = |_: &str| true;
        assert_eq!(single_ca_bundle(none, all), Some("/etc/pki/tls/certs/ca-bundle.crt"));
        let debian = |p: &str| p == "/etc/ssl/certs/ca-certificates.crt";
        assert_eq!(single_ca_bundle(none, debian), Some("/etc/ssl/certs/ca-certificates.crt"));
        assert_eq!(single_ca_bundle(none, |_: &str| false), None);
        for set in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            assert_eq!(single_ca_bundle(|k: &str| (k == set).then(|| "/x".to_string()), all), None, "{set}");
        }
    }
}
