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
//!   named at creation with the key ARN and an id of its own that KMS links to its material id
//!   (KeyMaterialDescription; see `custody`), so it can be imported again
//!   ([`Rotator::reimport`]); [`Rotator::materials`] shows what KMS lists and what the HSM holds.

pub mod hsm;

mod alias_swap;
mod custody;
mod error;
mod import;
mod in_place;
mod materials;
mod multi_region;
mod plan;
mod record;
mod reimport;
mod request;
mod verify;

pub use error::RotationError;
pub use materials::{MaterialStatus, MaterialsReport};
pub use multi_region::Replica;
pub use plan::{Progress, RotationPlan};
pub use record::RotationRecord;
pub use reimport::{Expiration, ReimportReport, ReimportRequest, Reimported};
pub use request::{RotationRequest, Step, Strategy};

use error::aws_err;

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
use hsm::{KeyMaterialSource, WrappingAlgorithm, WrappingKeySpec};

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
        let resumed = !matches!(plan.progress, Progress::Fresh | Progress::FirstImport) || plan.resume_object.is_some();
        let (current_key_arn, material, kept) = match plan.strategy {
            Strategy::InPlace => self.in_place(req, &plan).await?,
            Strategy::AliasSwap => self.alias_swap(req, &plan).await?,
        };
        let hsm_object = kept.map(|k| k.to_string());
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
