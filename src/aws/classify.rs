//! What a failed AWS call means, once the SDK's retries are spent: denied, not found,
//! transient, unsupported by the endpoint, not for this resource, or other. Names the failure;
//! the callers decide whether it is a finding or fails the invocation.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::Error;

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
