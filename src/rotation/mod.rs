//! Rotation of imported (BYOK) key material: plan → GetParametersForImport → HSM generate
//! and wrap → ImportKeyMaterial → rotate or swap → verify → tag → ask Config to re-evaluate.
//!
//! Safety properties, each tested:
//! - Nothing is ever deleted: no key material, no key, no alias target. Old material stays
//!   associated (in-place) or the old key stays Enabled (alias-swap), so old ciphertext
//!   decrypts.
//! - Resumable: progress is written to the key as tags, so a run interrupted after any step
//!   completes on the next run without a second on-demand rotation or a second successor key.
//! - Tags claiming a rotation are written only after verification succeeds.
//! - Key material, wrapped or not, and the import token never reach a log or an error.
//! - Custody: with an HSM, every material is a persistent token object before KMS sees it,
//!   named with the key ARN and the KMS key material id, so it can be imported again
//!   ([`Rotator::reimport`]); [`Rotator::materials`] shows what KMS lists and what the HSM holds.

pub mod hsm;

mod alias_swap;
mod import;
mod in_place;
mod materials;
mod multi_region;
mod plan;
mod record;
mod reimport;
mod verify;

pub use materials::{MaterialStatus, MaterialsReport};
pub use multi_region::Replica;
pub use reimport::{ReimportReport, ReimportRequest, Reimported};

use plan::mechanism;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, ImportType, IncludeKeyMaterial, KeyState, OriginType, Tag,
    WrappingKeySpec as SdkSpec,
};
use chrono::{DateTime, Utc};

use crate::aws::{classify, to_chrono, Aws, FailureKind};
use crate::key::KeyRef;
use hsm::{HsmError, KeyMaterialSource, WrappingAlgorithm, WrappingKeySpec};

/// KMS allows this many on-demand rotations per key.
pub const ON_DEMAND_QUOTA: u32 = 25;
/// Written after ImportKeyMaterial, removed after the rotation is recorded: the new material
/// id, so a re-run knows the import happened.
pub const PENDING_TAG: &str = "KmsRotationGuardPendingMaterial";
/// On an old key (alias-swap): the key id of its successor, written right after CreateKey.
pub const SUCCESSOR_TAG: &str = "KmsRotationGuardSuccessor";
/// On a successor key (alias-swap): the ARN of the key it replaces.
pub const PREDECESSOR_TAG: &str = "KmsRotationGuardPredecessor";
pub const DATE_TAG: &str = "LastRotationDate";
pub const MATERIAL_TAG: &str = crate::params::MATERIAL_ID_TAG;
/// On a key: the HSM object holding its current material (token and `CKA_ID`).
pub const HSM_OBJECT_TAG: &str = "KmsRotationGuardHsmObject";
/// On a key: the change ticket (e.g. `CHG-1234`) of the campaign that rotated it, so an
/// auditor can go from the ticket to the keys and back (issue 22).
pub const CHANGE_ID_TAG: &str = "KmsRotationGuardChangeId";
/// The encryption context of every verification Encrypt/Decrypt. The rotation role may use
/// Encrypt and Decrypt only under it, so it can never decrypt application data.
pub const PROBE_CONTEXT: (&str, &str) = ("kms-rotation-guard:probe", "verification");
/// Never use import parameters this close to their 24-hour expiry.
const TOKEN_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

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
    /// The material exists as a persistent HSM object (`CKA_ID=pending`).
    KeepMaterial,
    GetParametersForImport,
    GenerateAndWrap,
    ImportKeyMaterial,
    /// The HSM object's `CKA_ID` is the KMS key material id.
    LabelMaterial,
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
    /// [`CHANGE_ID_TAG`] and the audit line.
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

/// Where a rotation stands, read from the key before doing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A key created without material: the first import, no rotation.
    FirstImport,
    /// Nothing in flight: a full rotation.
    Fresh,
    /// New material is imported (PENDING_ROTATION) but not yet current.
    Imported { material_id: String },
    /// The new material is current; verification and tags remain.
    Rotated { material_id: String },
    /// Alias-swap: the successor key exists (and may or may not have material).
    SuccessorCreated { successor: String },
    /// Alias-swap: the alias already points at this successor; verification and tags remain.
    Swapped { predecessor: String },
}

#[derive(Debug, Clone)]
pub struct RotationPlan {
    pub key_arn: String,
    pub key_id: String,
    pub alias: Option<String>,
    pub strategy: Strategy,
    pub algorithm: WrappingAlgorithm,
    pub wrapping_key_spec: WrappingKeySpec,
    pub source: String,
    pub progress: Progress,
    /// On-demand rotations left of 25; `None` when KMS cannot list them.
    pub quota_left: Option<u32>,
    pub state: String,
    /// Whether the new material stays in the HSM (custody).
    pub keeps_material: bool,
    /// Multi-Region primary: the replicas that get the same material before the rotation.
    pub replicas: Vec<Replica>,
}

impl fmt::Display for RotationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key:        {}", self.key_arn)?;
        if let Some(a) = &self.alias {
            writeln!(f, "alias:      {a}")?;
        }
        writeln!(f, "state:      {}", self.state)?;
        writeln!(f, "strategy:   {}", self.strategy)?;
        writeln!(f, "wrapping:   {} with {} ({})", self.algorithm, self.wrapping_key_spec, self.source)?;
        writeln!(f, "mechanism:  {}", mechanism(self.algorithm))?;
        writeln!(
            f,
            "custody:    {}",
            if self.keeps_material {
                "the new material stays in the HSM as a persistent token object (CKA_LABEL = key ARN, CKA_ID = material id)"
            } else {
                "NOT KEPT: this source forgets the material after the import (development only)"
            }
        )?;
        for r in &self.replicas {
            writeln!(f, "replica:    {} (same material, EXISTING_KEY_MATERIAL)", r.arn)?;
        }
        writeln!(f, "progress:   {:?}", self.progress)?;
        match self.quota_left {
            Some(n) => write!(f, "quota:      {n} of {ON_DEMAND_QUOTA} on-demand rotations left"),
            None => write!(f, "quota:      unknown (ListKeyRotations not available)"),
        }
    }
}

/// What a completed rotation did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    pub key_arn: String,
    /// The key now behind the alias (differs from `key_arn` after alias-swap).
    pub current_key_arn: String,
    pub strategy: String,
    pub wrapping_algorithm: String,
    pub key_material_id: Option<String>,
    /// The HSM object that holds the material (`None`: the source keeps none).
    pub hsm_object: Option<String>,
    /// Multi-Region: the replicas that received the same material.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    pub rotated_at: DateTime<Utc>,
    pub quota_left: Option<u32>,
    pub resumed: bool,
    pub duration_ms: u128,
    /// The change ticket of the campaign that ran this rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
}

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

fn aws_err<E>(
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

/// The state of a key as the rotation sees it.
struct KeyView {
    arn: String,
    id: String,
    state: KeyState,
    origin: Option<OriginType>,
    multi_region: bool,
    /// Multi-Region: whether this is the primary key, and its replicas.
    primary: bool,
    replicas: Vec<Replica>,
    current_material: Option<String>,
    tags: BTreeMap<String, String>,
    /// `None` when the endpoint cannot list rotations.
    rotations: Option<Vec<aws_sdk_kms::types::RotationsListEntry>>,
}

/// Receives each step of a rotation with a line for a person.
type StepObserver<'a> = Box<dyn Fn(Step, &str) + Send + Sync + 'a>;

/// Runs rotations with one KMS client (the key owner's account) and one key-material source.
pub struct Rotator<'a> {
    aws: &'a Aws,
    source: &'a dyn KeyMaterialSource,
    /// Progress lines for a person (the CLI prints them; Lambda logs them).
    on_step: StepObserver<'a>,
    /// Wrapping for re-imports: pinned algorithm (else the strongest) and key spec.
    wrapping: (Option<WrappingAlgorithm>, WrappingKeySpec),
}

impl<'a> Rotator<'a> {
    pub fn new(aws: &'a Aws, source: &'a dyn KeyMaterialSource) -> Self {
        Rotator { aws, source, on_step: Box::new(|_, _| {}), wrapping: (None, WrappingKeySpec::Rsa4096) }
    }

    pub fn on_step(mut self, f: impl Fn(Step, &str) + Send + Sync + 'a) -> Self {
        self.on_step = Box::new(f);
        self
    }

    /// The wrapping algorithm (`None`: the strongest the source can do) and key spec that
    /// [`Self::reimport`] asks KMS for. (A rotation takes them from its request.)
    pub fn wrapping(mut self, algorithm: Option<WrappingAlgorithm>, spec: WrappingKeySpec) -> Self {
        self.wrapping = (algorithm, spec);
        self
    }

    fn say(&self, step: Step, text: &str) {
        tracing::info!(step = ?step, "{text}");
        (self.on_step)(step, text);
    }

    fn step(&self, req: &RotationRequest, step: Step, text: &str) -> Result<(), RotationError> {
        self.say(step, text);
        if req.stop_after == Some(step) {
            return Err(RotationError::Interrupted(step));
        }
        Ok(())
    }

    fn kms(&self) -> &aws_sdk_kms::Client {
        self.aws.kms()
    }

    async fn read(&self, key: &str) -> Result<KeyView, RotationError> {
        let m = self.kms().describe_key().key_id(key).send().await.map_err(aws_err("kms:DescribeKey"))?;
        let m =
            m.key_metadata().ok_or_else(|| RotationError::Verification("DescribeKey returned no metadata".into()))?;
        let arn = m.arn().unwrap_or_default().to_string();
        let mut tags = BTreeMap::new();
        let mut marker = None;
        loop {
            let out = self
                .kms()
                .list_resource_tags()
                .key_id(m.key_id())
                .set_marker(marker)
                .send()
                .await
                .map_err(aws_err("kms:ListResourceTags"))?;
            tags.extend(out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())));
            marker = out.next_marker().map(str::to_string);
            if !out.truncated() || marker.is_none() {
                break;
            }
        }
        let rotations = match self
            .kms()
            .list_key_rotations()
            .key_id(m.key_id())
            .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
            .send()
            .await
        {
            Ok(o) => Some(o.rotations().to_vec()),
            Err(e) if classify(&e).kind == FailureKind::Unsupported => {
                tracing::warn!(
                    "ListKeyRotations is not available at this endpoint: quota and pending material unknown"
                );
                None
            }
            Err(e) => return Err(aws_err("kms:ListKeyRotations")(e)),
        };
        Ok(KeyView {
            arn,
            id: m.key_id().to_string(),
            state: m.key_state().cloned().unwrap_or(KeyState::Unavailable),
            origin: m.origin().cloned(),
            multi_region: m.multi_region().unwrap_or(false),
            primary: m
                .multi_region_configuration()
                .and_then(|c| c.multi_region_key_type())
                .is_some_and(|t| t.as_str() == "PRIMARY"),
            replicas: m
                .multi_region_configuration()
                .map(|c| {
                    c.replica_keys()
                        .iter()
                        .filter_map(|r| Some(Replica { arn: r.arn()?.to_string(), region: r.region()?.to_string() }))
                        .collect()
                })
                .unwrap_or_default(),
            current_material: m.current_key_material_id().map(str::to_string),
            tags,
            rotations,
        })
    }

    /// Reads the key and decides what to do; changes nothing.
    /// Plans and, unless `dry_run`, runs the rotation.
    pub async fn rotate(&self, req: &RotationRequest) -> Result<(RotationPlan, Option<RotationRecord>), RotationError> {
        let started = std::time::Instant::now();
        let plan = self.plan(req).await?;
        self.step(
            req,
            Step::Plan,
            &format!("planned {} rotation of {} ({:?})", plan.strategy, plan.key_arn, plan.progress),
        )?;
        if req.dry_run {
            return Ok((plan, None));
        }
        let resumed = !matches!(plan.progress, Progress::Fresh | Progress::FirstImport);
        let (current_key_arn, material) = match plan.strategy {
            Strategy::InPlace => self.in_place(req, &plan).await?,
            Strategy::AliasSwap => self.alias_swap(req, &plan).await?,
        };
        let hsm_object = self.held(&current_key_arn, material.as_deref())?.map(|k| k.to_string());
        let record = RotationRecord {
            key_arn: plan.key_arn.clone(),
            current_key_arn,
            strategy: plan.strategy.to_string(),
            wrapping_algorithm: plan.algorithm.as_str().to_string(),
            hsm_object,
            replicas: plan.replicas.iter().map(|r| r.arn.clone()).collect(),
            key_material_id: material,
            rotated_at: Utc::now(),
            quota_left: plan.quota_left.map(|q| {
                if plan.strategy == Strategy::InPlace
                    && !matches!(plan.progress, Progress::Rotated { .. } | Progress::FirstImport)
                {
                    q.saturating_sub(1)
                } else {
                    q
                }
            }),
            resumed,
            duration_ms: started.elapsed().as_millis(),
            change_id: req.change_id.clone(),
        };
        // The audit line: one structured record of who rotated what, where and how.
        tracing::info!(
            target: "audit",
            key = %record.key_arn,
            current_key = %record.current_key_arn,
            strategy = %record.strategy,
            algorithm = %record.wrapping_algorithm,
            material = record.key_material_id.as_deref().unwrap_or("unknown"),
            hsm_object = record.hsm_object.as_deref().unwrap_or("none (not kept)"),
            source = %plan.source,
            region = %self.aws.region(),
            host = %hostname(),
            resumed = record.resumed,
            duration_ms = record.duration_ms as u64,
            change_id = record.change_id.as_deref().unwrap_or("none"),
            "key material rotated"
        );
        if !req.reevaluate.is_empty() {
            self.aws
                .config_service()
                .start_config_rules_evaluation()
                .set_config_rule_names(Some(req.reevaluate.clone()))
                .send()
                .await
                .map_err(|e| {
                    let f = classify(&e);
                    RotationError::Aws {
                        operation: "config:StartConfigRulesEvaluation",
                        transient: f.kind == FailureKind::Transient,
                        message: f.message,
                    }
                })?;
            self.step(req, Step::Reevaluate, &format!("asked Config to re-evaluate {}", req.reevaluate.join(", ")))?;
        }
        Ok((plan, Some(record)))
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()))
        .unwrap_or_else(|_| "unknown".into())
}
