//! Why a rotation stopped, and its stable class. Every variant says what was (not) changed;
//! none carries key material, a wrapped blob or an import token.

use super::hsm::HsmError;
use super::Step;
use crate::aws::{classify, FailureKind};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The key cannot or must not be rotated; nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error("{operation} failed: {message}{}", if *.transient { " (transient: run the rotation again; it resumes)" } else { "" })]
    Aws { operation: &'static str, transient: bool, message: String },
    /// Verification failed: tags were not written; the old material is still usable.
    #[error("verification failed, no rotation recorded: {0}")]
    Verification(String),
    /// A multi-Region replica did not take the new material: the primary was not rotated.
    #[error(
        "replica {replica} did not take key material {material}: {reason}; the primary was not rotated \
         (its new material waits, unused, until every replica holds it): run the rotation again; it resumes"
    )]
    Replica { replica: String, material: String, reason: String },
    #[error("interrupted after {0:?} (test hook)")]
    Interrupted(Step),
}

impl crate::error::Classified for RotationError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            RotationError::Refused(_) => ErrorClass::RemediationRefused,
            RotationError::Hsm(_) => ErrorClass::HsmError,
            RotationError::Aws { transient, message, .. } => ErrorClass::of_aws(*transient, message),
            RotationError::Verification(_) => ErrorClass::VerificationFailed,
            RotationError::Interrupted(_) => ErrorClass::Interrupted,
            // A replica lacks the new material: the primary was not rotated; an operator acts.
            RotationError::Replica { .. } => ErrorClass::RemediationRefused,
        }
    }
}

pub(super) fn aws_err<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_kms::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>) -> RotationError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let f = classify(&e);
        RotationError::Aws { operation, transient: f.kind == FailureKind::Transient, message: f.message }
    }
}
