//! Errors that fail an invocation. Findings (missing keys, denied reads, missing tags) are
//! not errors: they become NON_COMPLIANT verdicts. What lands here never becomes a verdict,
//! so Config retries the rule instead of recording something untrue.

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
}

impl Error {
    pub fn malformed(what: impl Into<String>) -> Error {
        Error::MalformedEvent(what.into())
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Aws { transient: true, .. } | Error::Deadline(_))
    }
}
