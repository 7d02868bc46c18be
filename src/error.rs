//! Errors that fail an invocation. Findings (missing keys, denied reads, missing tags) are
//! not errors: they become NON_COMPLIANT verdicts. What lands here never becomes a verdict,
//! so Config retries the rule instead of recording something untrue.
//!
//! Each error has a stable class, its `errorType` in the Lambda Runtime API's error
//! response and in the log line: operators alarm and search on it, so a name never changes.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid rule parameter {name}: {reason}")]
    InvalidParameter { name: String, reason: String },

    #[error("malformed event: {0}")]
    MalformedEvent(String),

    /// An AWS call failed in a way that says nothing about compliance.
    #[error("{operation} failed{}: {message}", if *.transient { " after retries (transient; the invocation fails so Config retries it)" } else { "" })]
    Aws { operation: &'static str, transient: bool, message: String },

    #[error("stopped before the Lambda deadline: {0}")]
    Deadline(String),

    /// Organization rules: the member account's execution role could not be assumed (it is
    /// missing, or its trust policy does not admit this function's role). Only this
    /// member's invocation fails; AWS answers AccessDenied for both causes.
    #[error("cannot act in member account {account}: sts:AssumeRole on {role_arn} failed: {message}. Deploy member-role.yaml (StackSet) to this account, trusting this function's role")]
    MemberRole { account: String, role_arn: String, message: String },
}

impl Error {
    pub fn malformed(what: impl Into<String>) -> Error {
        Error::MalformedEvent(what.into())
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Aws { transient: true, .. } | Error::Deadline(_))
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidParameter { .. } => ErrorClass::InvalidParameter,
            Error::MalformedEvent(_) => ErrorClass::MalformedEvent,
            Error::Aws { transient, message, .. } => ErrorClass::of_aws(*transient, message),
            Error::Deadline(_) => ErrorClass::Deadline,
            Error::MemberRole { .. } => ErrorClass::MemberRoleUnavailable,
        }
    }
}

/// The stable `errorType` of a failed invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The event is not a Config rule event this function can read.
    MalformedEvent,
    /// A rule parameter (or a remediation's ruleParameters) is invalid.
    InvalidParameter,
    /// The remediation payload is not what the SSM document sends.
    InvalidRequest,
    /// The function's own configuration (environment) is incomplete or wrong.
    Configuration,
    /// Throttling, 5xx, timeouts, dropped connections that outlived the retries.
    TransientAwsError,
    /// IAM or a key policy refused a call the function needs (not a finding).
    AccessDenied,
    /// Any other AWS error.
    AwsError,
    /// The work could not finish before the Lambda deadline.
    Deadline,
    /// An organization rule could not assume the execution role in the member account.
    MemberRoleUnavailable,
    /// The remediation refused to rotate (the key must not or cannot be rotated).
    RemediationRefused,
    /// The HSM (PKCS#11 module, token, PIN, mechanism) failed.
    HsmError,
    /// A rotation's verification failed: nothing was recorded, the old material works.
    VerificationFailed,
    /// A rotation stopped part-way (test hook); running it again resumes.
    Interrupted,
    /// A fault of this program (e.g. a response it could not serialise).
    Internal,
}

/// Error codes AWS uses for authorisation failures (the code leads `Failure::message`).
const DENIED_CODES: &[&str] = &["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"];

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::MalformedEvent => "MalformedEvent",
            ErrorClass::InvalidParameter => "InvalidParameter",
            ErrorClass::InvalidRequest => "InvalidRequest",
            ErrorClass::Configuration => "ConfigurationError",
            ErrorClass::TransientAwsError => "TransientAwsError",
            ErrorClass::AccessDenied => "AccessDenied",
            ErrorClass::AwsError => "AwsError",
            ErrorClass::Deadline => "Deadline",
            ErrorClass::MemberRoleUnavailable => "MemberRoleUnavailable",
            ErrorClass::RemediationRefused => "RemediationRefused",
            ErrorClass::HsmError => "HsmError",
            ErrorClass::VerificationFailed => "VerificationFailed",
            ErrorClass::Interrupted => "Interrupted",
            ErrorClass::Internal => "InternalError",
        }
    }

    /// An AWS failure: transient, a denial (its message starts with the AWS error code, as
    /// `aws::classify` writes it), or anything else.
    pub fn of_aws(transient: bool, message: &str) -> ErrorClass {
        let code = message.split([':', ' ']).next().unwrap_or("");
        if transient {
            ErrorClass::TransientAwsError
        } else if DENIED_CODES.contains(&code) {
            ErrorClass::AccessDenied
        } else {
            ErrorClass::AwsError
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&Error> for ErrorClass {
    fn from(e: &Error) -> ErrorClass {
        e.class()
    }
}

/// An error that names its own stable class. Each error type implements it in the module
/// that owns it, so this module, at the bottom of the crate, names none of the modules
/// above it.
pub trait Classified {
    fn class(&self) -> ErrorClass;
}

impl Classified for Error {
    fn class(&self) -> ErrorClass {
        Error::class(self)
    }
}

/// `s` cut to `max` characters, with `…` when cut. Input quoted back in an error message is
/// bounded so that a hostile or huge value cannot flood the one log line it lands in; it
/// lives here, at the bottom, because every layer quotes input in its errors.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A failed invocation as the Runtime API and the log see it: a stable class and one
/// readable line (the errors' Display forms, never the SDK's Debug chains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub class: ErrorClass,
    pub message: String,
}

impl Failed {
    pub fn new(class: ErrorClass, message: impl std::fmt::Display) -> Failed {
        // One line: a multi-line message would split into several CloudWatch events.
        let message = message.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        Failed { class, message }
    }

    /// Any of our errors that names its class ([`Classified`]).
    pub fn of<E>(e: &E) -> Failed
    where
        E: std::fmt::Display + Classified,
    {
        Failed::new(e.class(), e)
    }

    /// Logs the one ERROR line of this failure (the caller's span supplies requestId).
    pub fn log(&self) {
        tracing::error!(errorType = self.class.as_str(), "{}", self.message);
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl From<Failed> for lambda_runtime::Diagnostic {
    fn from(f: Failed) -> lambda_runtime::Diagnostic {
        lambda_runtime::Diagnostic { error_type: f.class.as_str().into(), error_message: f.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_failures_are_classed_by_transience_then_code() {
        let aws =
            |transient, message: &str| Error::Aws { operation: "kms:DescribeKey", transient, message: message.into() };
        assert_eq!(aws(true, "ThrottlingException: slow down").class(), ErrorClass::TransientAwsError);
        assert_eq!(aws(false, "AccessDeniedException: no").class(), ErrorClass::AccessDenied);
        assert_eq!(aws(false, "AccessDenied (HTTP 403)").class(), ErrorClass::AccessDenied);
        assert_eq!(aws(false, "ValidationException: bad").class(), ErrorClass::AwsError);
        assert_eq!(Error::malformed("x").class().as_str(), "MalformedEvent");
        assert_eq!(Error::Deadline("x".into()).class().as_str(), "Deadline");
    }

    #[test]
    fn the_diagnostic_is_one_line_with_a_stable_type() {
        let d: lambda_runtime::Diagnostic = Failed::of(&Error::malformed("invokingEvent:\n  not JSON")).into();
        assert_eq!(d.error_type, "MalformedEvent");
        assert_eq!(d.error_message, "malformed event: invokingEvent: not JSON");
    }
}
