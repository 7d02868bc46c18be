//! One SDK configuration and one client per service, per process: built on first use and
//! reused across Lambda invocations. Retries with backoff are the SDK's standard mode;
//! here we only decide what a failure that survived them means.
//!
//! The parts: `classify` (what a failure means), `credentials` (assumed roles, cached per
//! process), `counter` (request counts for tests and the benchmark), `ca_bundle` (the cold
//! start's TLS roots). This module must not judge compliance: it says what a failure is,
//! the layers above decide what it means for a verdict.

mod ca_bundle;
mod classify;
mod counter;
mod credentials;

pub use ca_bundle::{prefer_single_ca_bundle, single_ca_bundle};
pub use classify::{classify, fail, Failure, FailureKind};
pub use counter::CallCounter;
pub use credentials::{Credentials, CREDENTIAL_RENEWAL_MARGIN};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};

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
    organizations: OnceLock<aws_sdk_organizations::Client>,
    /// Credentials of assumed roles, by role ARN (`credentials`): warm invocations reuse
    /// them instead of calling sts:AssumeRole each time. One slot per role, shared by every
    /// `Aws` derived from this one ([`Aws::for_account`], [`Aws::in_region`]), so the cache is
    /// process-wide, and concurrent first uses wait for one AssumeRole.
    assumed: Arc<Mutex<BTreeMap<String, credentials::Slot>>>,
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
            organizations: OnceLock::new(),
            assumed: Arc::new(Mutex::new(BTreeMap::new())),
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

    /// AWS Organizations (a global service: the SDK resolves its one endpoint per partition).
    pub fn organizations(&self) -> &aws_sdk_organizations::Client {
        self.organizations.get_or_init(|| {
            let mut b = aws_sdk_organizations::config::Builder::from(&self.config);
            if let Some(url) = self.endpoint("organizations") {
                b = b.endpoint_url(url);
            }
            for i in self.interceptors() {
                b.push_interceptor(i);
            }
            aws_sdk_organizations::Client::from_conf(b.build())
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

/// SDK timestamps as chrono's.
pub fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
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
