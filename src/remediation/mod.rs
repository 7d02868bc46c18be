//! The remediation: "does this key need rotating?", asked in front of every automatic
//! rotation, then the rotation itself, serialised per key.
//!
//! Config starts one remediation per NON_COMPLIANT *resource*, so 30 buckets on one stale key
//! ask for 30 rotations, and a key has only 25 on-demand rotations for its whole life. The
//! gate lets one through and refuses the others with a reason:
//! - the key material (tag, and KMS's newest rotation) is younger than
//!   `maxKeyAgeDays − expiryWarningDays`, judged by the rule's own verdict;
//! - the key had an ON_DEMAND rotation in the last 24 hours (ListKeyRotations);
//! - the finding is not one rotation fixes (no customer managed key, AWS-managed or
//!   AWS_KMS-origin keys, alias-swap for RDS/DynamoDB, which store the key ARN).
//!
//! The parts, one file each (every public name is re-exported here):
//! - `request`: the payload the SSM Automation document sends, parsed and checked;
//! - `gate`: pure (facts + parameters + now → [`Need`]); no AWS call;
//! - `reads`: the KMS reads the gate needs ([`read_key`]);
//! - `claim`: concurrent invocations are serialised per key by a claim tag ([`claim()`]): the
//!   winner re-reads the key after claiming, so a rotation finished by another invocation in
//!   the meantime is seen and not repeated;
//! - `rotate`: the two halves the CLI and the Lambda run, [`admit`] and [`rotate_admitted`];
//! - `policy`: the security account's policy and what a request may ask of it (issue 20:
//!   a workload account can only ask, the security account decides);
//! - `usage`: whether the asking account uses the key (its key policy and grants).
//!
//! It must never delete a key or key material: deleting is a separate, deliberate path.

mod claim;
mod gate;
pub mod policy;
mod reads;
mod request;
mod rotate;
pub mod usage;

pub use claim::{claim, new_claim_id, release, Claim, CLAIM_LEASE, CLAIM_TAG, DEFAULT_CLAIM_SETTLE};
pub use gate::{assess, finding_check, Need, ON_DEMAND_COOLDOWN};
pub use policy::{Requester, SecurityPolicy};
pub use reads::read_key;
pub use request::{
    incoming, is_bus_event, RemediationAction, RemediationRequest, ResourceKind, ValidRequest, REQUEST_DETAIL_TYPE,
    WORKLOAD_SOURCE,
};
pub use rotate::{admit, rotate_admitted, rotate_if_needed, Admission, Outcome, Scope};

/// The `audit` field of the one line every remediation writes (security-account.yaml's
/// metric filters match it).
pub const AUDIT: &str = "remediation";
/// The `outcome`s of that line the stack counts and alarms on; a failure is logged as
/// `failed` and counted by Lambda's own Errors metric.
pub const METERED_OUTCOMES: [&str; 4] = ["rotated", "skipped", "refused", "reimported"];

use crate::error::{Classified, ErrorClass};
use crate::rotation::RotationError;

/// Why a remediation failed. Skips are not errors: they are `Ok` responses.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    /// The payload is not a remediation request (contracts.md); Config's retry cannot help.
    #[error("malformed remediation payload: {0}")]
    MalformedPayload(String),
    /// The function's environment is wrong (module, token, PIN secret).
    #[error("invalid remediation settings: {0}")]
    InvalidSettings(String),
    /// Rotating would be unsafe or impossible (pending deletion, quota exhausted, multi-Region,
    /// alias-swap not allowed): nothing was changed, and an operator must act.
    #[error("remediation refused: {0}")]
    Refused(String),
    /// Our own read of the key was refused: the rotation role lacks a permission.
    #[error("{operation} denied: {message}")]
    AccessDenied { operation: String, message: String },
    /// A read before the rotation failed; `transient` ones succeed on a retry.
    #[error("{operation} failed{}: {message}", if *.transient { " (transient; retry)" } else { "" })]
    Aws { operation: &'static str, transient: bool, message: String },
    #[error(transparent)]
    Rotation(#[from] RotationError),
}

impl RemediationError {
    /// The stable Lambda errorType of this failure (one naming for every error: `ErrorClass`).
    pub fn error_type(&self) -> &'static str {
        Classified::class(self).as_str()
    }
}

impl Classified for RemediationError {
    fn class(&self) -> ErrorClass {
        match self {
            RemediationError::MalformedPayload(_) => ErrorClass::InvalidRequest,
            RemediationError::InvalidSettings(_) => ErrorClass::Configuration,
            RemediationError::Refused(_) => ErrorClass::RemediationRefused,
            RemediationError::AccessDenied { .. } => ErrorClass::AccessDenied,
            RemediationError::Aws { transient, message, .. } => ErrorClass::of_aws(*transient, message),
            RemediationError::Rotation(r) => r.class(),
        }
    }
}

/// Input quoted back in a message, bounded.
fn clip(s: &str, max: usize) -> String {
    crate::error::truncate_chars(s, max)
}

#[cfg(test)]
mod tests;
