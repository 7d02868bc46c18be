//! What a rotation is asked to do: the strategy, the request, and the named steps (for
//! progress output and for tests that interrupt a run). Plain data; no AWS call.

use std::fmt;

use chrono::{DateTime, Utc};

use super::hsm::{WrappingAlgorithm, WrappingKeySpec};
use super::{RotationError, DATE_TAG};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Import NEW_KEY_MATERIAL and RotateKeyOnDemand: key id and alias stay.
    InPlace,
    /// A new EXTERNAL key with the same policy, description and tags; the alias moves.
    AliasSwap,
}

impl std::str::FromStr for Strategy {
    type Err = RotationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-place" | "" => Ok(Strategy::InPlace),
            "alias-swap" => Ok(Strategy::AliasSwap),
            other => Err(RotationError::Refused(format!("unknown strategy {other:?}: use in-place or alias-swap"))),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::InPlace => "in-place",
            Strategy::AliasSwap => "alias-swap",
        })
    }
}

/// The steps, named for progress output and for interrupting tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Plan,
    CreateSuccessor,
    /// The material exists as a persistent HSM object, named at creation (`CKA_ID=krg-…`).
    KeepMaterial,
    GetParametersForImport,
    GenerateAndWrap,
    ImportKeyMaterial,
    /// Multi-Region: the same material is imported into every replica.
    ImportIntoReplicas,
    Rotate,
    Verify,
    Record,
    Reevaluate,
}

#[derive(Debug, Clone)]
pub struct RotationRequest {
    /// Alias, alias ARN, key id or key ARN.
    pub key: String,
    pub strategy: Strategy,
    /// Pin a wrapping algorithm; otherwise the strongest the HSM can do.
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
    pub wrapping_key_spec: WrappingKeySpec,
    /// `None`: the material never expires (KEY_MATERIAL_DOES_NOT_EXPIRE).
    pub valid_to: Option<DateTime<Utc>>,
    pub dry_run: bool,
    /// Config rules to re-evaluate afterwards (StartConfigRulesEvaluation).
    pub reevaluate: Vec<String>,
    /// The tag holding the rotation date (the rules' `rotationTagKey`).
    pub date_tag: String,
    /// Only rotate keys carrying this tag with this value (a guard for automation).
    pub required_tag: Option<(String, String)>,
    /// The change ticket this rotation belongs to: written into the record, the key's
    /// [`CHANGE_ID_TAG`](super::CHANGE_ID_TAG) and the audit line.
    pub change_id: Option<String>,
    /// Tests only: stop with [`RotationError::Interrupted`] right after this step.
    #[doc(hidden)]
    pub stop_after: Option<Step>,
}

impl RotationRequest {
    pub fn new(key: impl Into<String>) -> Self {
        RotationRequest {
            key: key.into(),
            strategy: Strategy::InPlace,
            wrapping_algorithm: None,
            wrapping_key_spec: WrappingKeySpec::Rsa4096,
            valid_to: None,
            dry_run: false,
            reevaluate: vec![],
            date_tag: DATE_TAG.to_string(),
            required_tag: None,
            change_id: None,
            stop_after: None,
        }
    }
}
