//! The security team's rotation runbook (issue 22), above the estate: an inventory of every
//! key ([`inventory`]), a campaign that rotates in waves dev → int → prod inside a
//! maintenance window and soaks while it watches ([`campaign`]), the watch for failed key
//! use after a rotation ([`watch`], on CloudTrail records: [`trail`]), the rollback of an
//! alias swap ([`rollback`]) and the retirement of the key an alias swap replaced
//! ([`retire`]).
//!
//! Every decision is a pure function of facts read before it (key facts, CloudTrail
//! records, a scan export, the clock), tested without a network; the I/O around it reads,
//! then writes only what the decision says. Nothing here rotates except through the
//! remediation gate (`remediation::rotate_if_needed`), the same one `rotate` and the
//! Lambda use, and nothing here forces a rotation.
//!
//! Layer 9: may use everything below (estate, handler, remediation, rotation, key, aws);
//! nothing below uses it. The CLI commands (`keys`, `campaign`, `rollback`, `retire`) and
//! the watcher Lambda are thin wrappers around it.

pub mod campaign;
pub mod inventory;
pub mod retire;
pub mod rollback;
pub mod trail;
pub mod usage;
pub mod watch;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::{classify, FailureKind};
use crate::remediation::RemediationError;
use crate::rotation::hsm::HsmError;
use crate::rotation::RotationError;

/// The guard tag: keys the tool may touch carry `kms-rotation-guard=<value>`
/// (security-account.yaml `RotatableKeyTagValue`).
pub const GUARD_TAG: &str = "kms-rotation-guard";
/// The tag that groups keys into waves (dev, int, prod).
pub const ENVIRONMENT_TAG: &str = "Environment";
/// Written by `rollback` on the key the alias points back to: `<time> from <successor id>`.
pub const ROLLBACK_TAG: &str = "KmsRotationGuardRollback";
/// Written by `retire` when it disables a key: `disabled <time> grace <N>d`.
pub const RETIREMENT_TAG: &str = "KmsRotationGuardRetirement";

/// Why a runbook step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    /// Bad input (a flag, a plan file, a scan export): nothing was read or changed.
    #[error("{0}")]
    Input(String),
    /// The step must not run (a check failed): nothing was changed, and a person must act.
    #[error("refused: {0}")]
    Refused(String),
    /// Our own read was refused: the role lacks a permission.
    #[error("{operation} denied: {message}")]
    Denied { operation: &'static str, message: String },
    #[error("{operation} failed{}: {message}", if *.transient { " (transient; run it again)" } else { "" })]
    Aws { operation: &'static str, transient: bool, message: String },
    #[error(transparent)]
    Remediation(#[from] RemediationError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Core(#[from] crate::Error),
}

impl RunbookError {
    /// A refusal a person must act on (exit 1), rather than an error (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RunbookError::Refused(_)
                | RunbookError::Remediation(RemediationError::Refused(_))
                | RunbookError::Rotation(RotationError::Refused(_))
        )
    }
}

impl crate::error::Classified for RunbookError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            RunbookError::Input(_) => ErrorClass::InvalidParameter,
            RunbookError::Refused(_) => ErrorClass::RemediationRefused,
            RunbookError::Denied { .. } => ErrorClass::AccessDenied,
            RunbookError::Aws { transient: true, .. } => ErrorClass::TransientAwsError,
            RunbookError::Aws { .. } => ErrorClass::AwsError,
            RunbookError::Remediation(e) => e.class(),
            RunbookError::Rotation(e) => e.class(),
            RunbookError::Hsm(e) => e.class(),
            RunbookError::Core(e) => e.class(),
        }
    }
}

/// Maps an SDK failure of `operation` to a [`RunbookError`].
pub(crate) fn aws_err<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> RunbookError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let f = classify(&e);
        match f.kind {
            FailureKind::Denied => RunbookError::Denied { operation, message: f.message },
            kind => RunbookError::Aws { operation, transient: kind == FailureKind::Transient, message: f.message },
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as every tag this tool writes holds a time.
pub(crate) fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classified, ErrorClass};

    #[test]
    fn each_error_names_its_class() {
        assert_eq!(RunbookError::Input("x".into()).class(), ErrorClass::InvalidParameter);
        assert_eq!(RunbookError::Refused("x".into()).class(), ErrorClass::RemediationRefused);
        let e = RunbookError::Aws { operation: "cloudtrail:LookupEvents", transient: true, message: "x".into() };
        assert_eq!(e.class(), ErrorClass::TransientAwsError);
        assert!(RunbookError::Refused("x".into()).is_refusal());
        assert!(!RunbookError::Input("x".into()).is_refusal());
    }
}
