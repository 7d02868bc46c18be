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

pub mod hsm;

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
    GetParametersForImport,
    GenerateAndWrap,
    ImportKeyMaterial,
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
    pub rotated_at: DateTime<Utc>,
    pub quota_left: Option<u32>,
    pub resumed: bool,
    pub duration_ms: u128,
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
    #[error("interrupted after {0:?} (test hook)")]
    Interrupted(Step),
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
}

impl<'a> Rotator<'a> {
    pub fn new(aws: &'a Aws, source: &'a dyn KeyMaterialSource) -> Self {
        Rotator { aws, source, on_step: Box::new(|_, _| {}) }
    }

    pub fn on_step(mut self, f: impl Fn(Step, &str) + Send + Sync + 'a) -> Self {
        self.on_step = Box::new(f);
        self
    }

    fn step(&self, req: &RotationRequest, step: Step, text: &str) -> Result<(), RotationError> {
        tracing::info!(step = ?step, "{text}");
        (self.on_step)(step, text);
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
            current_material: m.current_key_material_id().map(str::to_string),
            tags,
            rotations,
        })
    }

    /// Reads the key and decides what to do; changes nothing.
    pub async fn plan(&self, req: &RotationRequest) -> Result<RotationPlan, RotationError> {
        KeyRef::parse(&req.key).map_err(|e| RotationError::Refused(e.to_string()))?;
        let k = self.read(&req.key).await?;
        if k.origin != Some(OriginType::External) {
            return Err(RotationError::Refused(format!(
                "key {} has origin {}: only imported (EXTERNAL) key material is rotated by this tool; \
                 AWS_KMS keys use automatic rotation (EnableKeyRotation)",
                k.arn,
                k.origin.as_ref().map(|o| o.as_str()).unwrap_or("unknown")
            )));
        }
        if k.multi_region {
            return Err(RotationError::Refused(format!(
                "key {} is multi-Region: importing into its replicas is not implemented, so rotating the primary \
                 alone would leave the replicas unusable",
                k.arn
            )));
        }
        match k.state {
            KeyState::Enabled | KeyState::PendingImport => {}
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion => {
                return Err(RotationError::Refused(format!(
                    "key {} is pending deletion: cancel the deletion (kms:CancelKeyDeletion) first",
                    k.arn
                )))
            }
            other => {
                return Err(RotationError::Refused(format!(
                    "key {} is {}: only Enabled keys (or PendingImport keys, for their first import) can be rotated",
                    k.arn,
                    other.as_str()
                )))
            }
        }
        if let Some((tag, value)) = &req.required_tag {
            if k.tags.get(tag) != Some(value) {
                return Err(RotationError::Refused(format!(
                    "key {} is not tagged {tag}={value}: this rotation only touches keys marked for it",
                    k.arn
                )));
            }
        }
        let quota_left = k.rotations.as_ref().map(|rs| {
            let used = rs.iter().filter(|r| r.rotation_type().map(|t| t.as_str()) == Some("ON_DEMAND")).count() as u32;
            ON_DEMAND_QUOTA.saturating_sub(used)
        });
        let progress = self.progress(req, &k).await?;
        if quota_left == Some(0) && matches!(progress, Progress::Fresh) && req.strategy == Strategy::InPlace {
            return Err(RotationError::Refused(format!(
                "key {} has used all {ON_DEMAND_QUOTA} on-demand rotations: use --strategy alias-swap",
                k.arn
            )));
        }
        let alias = match req.strategy {
            Strategy::AliasSwap => Some(self.alias_for(req, &k).await?),
            Strategy::InPlace => None,
        };
        let algorithm = self.source.choose(req.wrapping_algorithm)?;
        Ok(RotationPlan {
            key_arn: k.arn,
            key_id: k.id,
            alias,
            strategy: req.strategy,
            algorithm,
            wrapping_key_spec: req.wrapping_key_spec,
            source: self.source.name().to_string(),
            progress,
            quota_left,
            state: k.state.as_str().to_string(),
        })
    }

    async fn progress(&self, req: &RotationRequest, k: &KeyView) -> Result<Progress, RotationError> {
        if req.strategy == Strategy::AliasSwap {
            if let Some(s) = k.tags.get(SUCCESSOR_TAG) {
                return Ok(Progress::SuccessorCreated { successor: s.clone() });
            }
            // Reached through the alias after it moved: a successor whose rotation is not
            // recorded yet (the pending tag goes only after the rotation tags are written).
            if let (Some(p), true) = (k.tags.get(PREDECESSOR_TAG), k.tags.contains_key(PENDING_TAG)) {
                return Ok(Progress::Swapped { predecessor: p.clone() });
            }
        }
        if k.state == KeyState::PendingImport {
            return Ok(Progress::FirstImport);
        }
        if let Some(m) = k.tags.get(PENDING_TAG) {
            return Ok(if k.current_material.as_deref() == Some(m.as_str()) {
                Progress::Rotated { material_id: m.clone() }
            } else {
                Progress::Imported { material_id: m.clone() }
            });
        }
        // Interrupted between ImportKeyMaterial and the pending tag: KMS lists the material.
        let pending = k
            .rotations
            .iter()
            .flatten()
            .find(|r| r.key_material_state().map(|s| s.as_str()) == Some("PENDING_ROTATION"));
        if let Some(id) = pending.and_then(|p| p.key_material_id()) {
            return Ok(Progress::Imported { material_id: id.to_string() });
        }
        Ok(Progress::Fresh)
    }

    /// The alias to move: the one named, else the key's only alias.
    async fn alias_for(&self, req: &RotationRequest, k: &KeyView) -> Result<String, RotationError> {
        match KeyRef::parse(&req.key) {
            Ok(KeyRef::AliasName(a)) => return Ok(a),
            Ok(KeyRef::AliasArn(a)) => return Ok(a.resource),
            _ => {}
        }
        let out = self.kms().list_aliases().key_id(&k.id).send().await.map_err(aws_err("kms:ListAliases"))?;
        let names: Vec<&str> = out.aliases().iter().filter_map(|a| a.alias_name()).collect();
        match names[..] {
            [one] => Ok(one.to_string()),
            [] => Err(RotationError::Refused(format!("key {} has no alias to move: alias-swap needs one", k.arn))),
            _ => Err(RotationError::Refused(format!(
                "key {} has several aliases ({}): name the one to move",
                k.arn,
                names.join(", ")
            ))),
        }
    }

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
        let record = RotationRecord {
            key_arn: plan.key_arn.clone(),
            current_key_arn,
            strategy: plan.strategy.to_string(),
            wrapping_algorithm: plan.algorithm.as_str().to_string(),
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
        };
        // The audit line: one structured record of who rotated what, where and how.
        tracing::info!(
            target: "audit",
            key = %record.key_arn,
            current_key = %record.current_key_arn,
            strategy = %record.strategy,
            algorithm = %record.wrapping_algorithm,
            material = record.key_material_id.as_deref().unwrap_or("unknown"),
            source = %plan.source,
            region = %self.aws.region(),
            host = %hostname(),
            resumed = record.resumed,
            duration_ms = record.duration_ms as u64,
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

    async fn in_place(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
    ) -> Result<(String, Option<String>), RotationError> {
        let key = plan.key_id.as_str();
        // A ciphertext made before the rotation must still decrypt after it.
        let before = if plan.progress == Progress::FirstImport { None } else { Some(self.encrypt_probe(key).await?) };
        let material = match &plan.progress {
            Progress::Fresh | Progress::FirstImport => {
                let first = plan.progress == Progress::FirstImport;
                let id = self.import(req, plan, key, !first).await?;
                if first {
                    id
                } else {
                    let id = id.ok_or_else(|| {
                        RotationError::Verification("ImportKeyMaterial returned no KeyMaterialId".into())
                    })?;
                    self.rotate_on_demand(req, key, &id).await?;
                    Some(id)
                }
            }
            Progress::Imported { material_id } => {
                if !self.read(key).await?.tags.contains_key(PENDING_TAG) {
                    self.tag(key, &[(PENDING_TAG, material_id)]).await?;
                }
                self.rotate_on_demand(req, key, material_id).await?;
                Some(material_id.clone())
            }
            Progress::Rotated { material_id } => Some(material_id.clone()),
            Progress::SuccessorCreated { .. } | Progress::Swapped { .. } => {
                unreachable!("only alias-swap plans have a successor")
            }
        };
        let material = self.verify(req, key, material.as_deref(), before.as_ref()).await?;
        self.record(req, key, material.as_deref()).await?;
        Ok((plan.key_arn.clone(), material))
    }

    /// GetParametersForImport, generate and wrap in the HSM, ImportKeyMaterial. Returns the
    /// new material's id when KMS reports it.
    async fn import(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
        key: &str,
        new_material: bool,
    ) -> Result<Option<String>, RotationError> {
        let params = self
            .kms()
            .get_parameters_for_import()
            .key_id(key)
            .wrapping_algorithm(AlgorithmSpec::from(plan.algorithm.as_str()))
            .wrapping_key_spec(SdkSpec::from(plan.wrapping_key_spec.as_str()))
            .send()
            .await
            .map_err(aws_err("kms:GetParametersForImport"))?;
        let valid_to = params.parameters_valid_to().and_then(to_chrono);
        if valid_to.is_some_and(|v| v < Utc::now() + TOKEN_MARGIN) {
            return Err(RotationError::Refused(
                "the import token expires within 10 minutes: run again for fresh parameters".into(),
            ));
        }
        let public_key = params
            .public_key()
            .ok_or_else(|| RotationError::Verification("GetParametersForImport returned no public key".into()))?;
        let token = params
            .import_token()
            .ok_or_else(|| RotationError::Verification("GetParametersForImport returned no import token".into()))?;
        self.step(
            req,
            Step::GetParametersForImport,
            &format!("got a {} wrapping key and import token", plan.wrapping_key_spec),
        )?;

        let wrapped = self.source.generate_and_wrap(public_key.as_ref(), plan.wrapping_key_spec, plan.algorithm)?;
        self.step(
            req,
            Step::GenerateAndWrap,
            &format!(
                "generated 32 bytes of key material in {} and wrapped them with {}",
                self.source.name(),
                plan.algorithm
            ),
        )?;
        if valid_to.is_some_and(|v| v < Utc::now() + TOKEN_MARGIN) {
            return Err(RotationError::Refused("the import token expired while the HSM worked: run again".into()));
        }
        let mut import = self
            .kms()
            .import_key_material()
            .key_id(key)
            .import_token(token.clone())
            .encrypted_key_material(Blob::new(wrapped.into_bytes()))
            .key_material_description(format!("kms-rotation-guard {}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ")));
        // The first material of a key is imported without ImportType (EXISTING_KEY_MATERIAL).
        if new_material {
            import = import.import_type(ImportType::NewKeyMaterial);
        }
        import = match req.valid_to {
            None => import.expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire),
            Some(t) => import
                .expiration_model(ExpirationModelType::KeyMaterialExpires)
                .valid_to(aws_smithy_types::DateTime::from_millis(t.timestamp_millis())),
        };
        let out = import.send().await.map_err(aws_err("kms:ImportKeyMaterial"))?;
        let mut id = out.key_material_id().map(str::to_string);
        if !new_material && id.is_none() {
            // The first material becomes current at once.
            id = self.current_material(key).await?;
        }
        // Written before anything else, so a re-run knows this import happened. (AWS also
        // lists the material as PENDING_ROTATION, which covers a stop right before this.)
        if let Some(m) = &id {
            self.tag(key, &[(PENDING_TAG, m)]).await?;
        }
        self.step(
            req,
            Step::ImportKeyMaterial,
            &format!("imported new key material {}", id.as_deref().unwrap_or("(id not reported)")),
        )?;
        Ok(id)
    }

    /// RotateKeyOnDemand, unless the material is already current. A retried call whose first
    /// attempt succeeded is recognised by reading the key again, never rotated twice.
    async fn rotate_on_demand(&self, req: &RotationRequest, key: &str, material: &str) -> Result<(), RotationError> {
        let current = self.current_material(key).await?;
        if current.as_deref() != Some(material) {
            if let Err(e) = self.kms().rotate_key_on_demand().key_id(key).send().await {
                let err = aws_err("kms:RotateKeyOnDemand")(e);
                if self.current_material(key).await?.as_deref() != Some(material) {
                    return Err(err);
                }
            }
        }
        self.step(req, Step::Rotate, &format!("rotated {key} to key material {material}"))
    }

    async fn current_material(&self, key: &str) -> Result<Option<String>, RotationError> {
        let out = self.kms().describe_key().key_id(key).send().await.map_err(aws_err("kms:DescribeKey"))?;
        Ok(out.key_metadata().and_then(|m| m.current_key_material_id()).map(str::to_string))
    }

    async fn encrypt_probe(&self, key: &str) -> Result<(Vec<u8>, Blob), RotationError> {
        // A random probe, not key material: it only proves old ciphertext stays readable.
        let probe: Vec<u8> = format!("kms-rotation-guard probe {}", uuid_like()).into_bytes();
        let out = self
            .kms()
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(probe.clone()))
            .send()
            .await
            .map_err(aws_err("kms:Encrypt"))?;
        let blob = out
            .ciphertext_blob()
            .cloned()
            .ok_or_else(|| RotationError::Verification("Encrypt returned no ciphertext".into()))?;
        Ok((probe, blob))
    }

    async fn decrypts(&self, key: &str, probe: &[u8], ciphertext: &Blob) -> Result<(), RotationError> {
        let out = self
            .kms()
            .decrypt()
            .key_id(key)
            .ciphertext_blob(ciphertext.clone())
            .send()
            .await
            .map_err(|e| RotationError::Verification(format!("Decrypt failed: {}", classify(&e).message)))?;
        if out.plaintext().map(|p| p.as_ref()) != Some(probe) {
            return Err(RotationError::Verification("Decrypt returned different plaintext".into()));
        }
        Ok(())
    }

    /// Encrypt/Decrypt round trip with the new material; the old ciphertext still decrypts;
    /// the new material is current. Returns the current material id.
    async fn verify(
        &self,
        req: &RotationRequest,
        key: &str,
        material: Option<&str>,
        before: Option<&(Vec<u8>, Blob)>,
    ) -> Result<Option<String>, RotationError> {
        // RotateKeyOnDemand may take a moment to make the new material current.
        let mut current = self.current_material(key).await?;
        for _ in 0..30 {
            if material.is_none() || current.as_deref() == material {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            current = self.current_material(key).await?;
        }
        if let (Some(want), Some(got)) = (material, current.as_deref()) {
            if want != got {
                return Err(RotationError::Verification(format!("current key material is {got}, expected {want}")));
            }
        }
        let (probe, ciphertext) = self.encrypt_probe(key).await?;
        self.decrypts(key, &probe, &ciphertext).await?;
        if let Some((old_probe, old_ciphertext)) = before {
            self.decrypts(key, old_probe, old_ciphertext).await?;
        }
        self.step(
            req,
            Step::Verify,
            "verified: encrypt/decrypt round trip, pre-rotation ciphertext decrypts, new material current",
        )?;
        Ok(current.or(material.map(str::to_string)))
    }

    async fn tag(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), RotationError> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().expect("key and value set"))
            .collect();
        self.kms().tag_resource().key_id(key).set_tags(Some(tags)).send().await.map_err(aws_err("kms:TagResource"))?;
        Ok(())
    }

    /// Writes the rotation tags (only ever after verification), then drops the pending tag.
    async fn record(&self, req: &RotationRequest, key: &str, material: Option<&str>) -> Result<(), RotationError> {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut tags = vec![(req.date_tag.as_str(), now.as_str())];
        if let Some(m) = material {
            tags.push((MATERIAL_TAG, m));
        }
        self.tag(key, &tags).await?;
        // Our own bookkeeping tag, not key material: removing it deletes nothing of value.
        self.kms()
            .untag_resource()
            .key_id(key)
            .tag_keys(PENDING_TAG)
            .send()
            .await
            .map_err(aws_err("kms:UntagResource"))?;
        self.step(req, Step::Record, &format!("tagged {key}: {}={now}", req.date_tag))
    }

    async fn alias_swap(
        &self,
        req: &RotationRequest,
        plan: &RotationPlan,
    ) -> Result<(String, Option<String>), RotationError> {
        let alias = plan.alias.as_deref().expect("alias-swap plans name an alias");
        if let Progress::Swapped { predecessor } = &plan.progress {
            // The old key must still decrypt what it encrypted; it was never disabled.
            let (probe, ciphertext) = self.encrypt_probe(predecessor).await?;
            self.decrypts(predecessor, &probe, &ciphertext).await?;
            if self.alias_target(alias).await?.as_deref() != Some(plan.key_id.as_str()) {
                return Err(RotationError::Verification(format!("{alias} does not point at {}", plan.key_id)));
            }
            let material = self.verify(req, alias, None, None).await?;
            self.record(req, &plan.key_id, material.as_deref()).await?;
            return Ok((plan.key_arn.clone(), material));
        }
        let old = plan.key_id.as_str();
        let before = self.encrypt_probe(old).await?;
        let successor = match &plan.progress {
            Progress::SuccessorCreated { successor } => successor.clone(),
            _ => {
                let id = self.create_successor(plan, &req.date_tag).await?;
                self.step(req, Step::CreateSuccessor, &format!("created successor key {id} for {alias}"))?;
                id
            }
        };
        let s = self.read(&successor).await?;
        let material = if s.state == KeyState::PendingImport {
            self.import(req, plan, &successor, false).await?
        } else {
            s.current_material.clone()
        };
        let target = self.alias_target(alias).await?;
        if target.as_deref() != Some(s.id.as_str()) {
            // Verify the successor works before any workload is pointed at it.
            let (probe, ciphertext) = self.encrypt_probe(&successor).await?;
            self.decrypts(&successor, &probe, &ciphertext).await?;
            self.kms()
                .update_alias()
                .alias_name(alias)
                .target_key_id(&s.id)
                .send()
                .await
                .map_err(aws_err("kms:UpdateAlias"))?;
            self.step(req, Step::Rotate, &format!("moved {alias} from {old} to {}", s.id))?;
        }
        if self.alias_target(alias).await?.as_deref() != Some(s.id.as_str()) {
            return Err(RotationError::Verification(format!("{alias} does not point at {}", s.id)));
        }
        // Ciphertext of the old key names the old key, which stays Enabled: it still decrypts.
        self.decrypts(old, &before.0, &before.1).await?;
        let material = self.verify(req, alias, None, None).await?.or(material);
        self.record(req, &s.id, material.as_deref()).await?;
        Ok((s.arn, material))
    }

    async fn alias_target(&self, alias: &str) -> Result<Option<String>, RotationError> {
        match self.kms().describe_key().key_id(alias).send().await {
            Ok(o) => Ok(o.key_metadata().map(|m| m.key_id().to_string())),
            Err(e) if classify(&e).kind == FailureKind::NotFound => Ok(None),
            Err(e) => Err(aws_err("kms:DescribeKey")(e)),
        }
    }

    /// A new EXTERNAL key with the old key's policy, description and tags. The old key is
    /// tagged with the successor's id at once, so a re-run never creates a second one.
    async fn create_successor(&self, plan: &RotationPlan, req_date_tag: &str) -> Result<String, RotationError> {
        let old = self.kms().describe_key().key_id(&plan.key_id).send().await.map_err(aws_err("kms:DescribeKey"))?;
        let description = old.key_metadata().and_then(|m| m.description()).unwrap_or_default().to_string();
        let policy = self
            .kms()
            .get_key_policy()
            .key_id(&plan.key_id)
            .policy_name("default")
            .send()
            .await
            .map_err(aws_err("kms:GetKeyPolicy"))?
            .policy()
            .map(str::to_string);
        let k = self.read(&plan.key_id).await?;
        let mut req = self.kms().create_key().origin(OriginType::External).description(description).set_policy(policy);
        for (key, value) in k.tags.iter().filter(|(t, _)| {
            ![PENDING_TAG, SUCCESSOR_TAG, PREDECESSOR_TAG, DATE_TAG, MATERIAL_TAG].contains(&t.as_str())
                && t.as_str() != req_date_tag
        }) {
            req = req.tags(Tag::builder().tag_key(key).tag_value(value).build().expect("key and value set"));
        }
        req = req
            .tags(Tag::builder().tag_key(PREDECESSOR_TAG).tag_value(&plan.key_arn).build().expect("key and value set"));
        let out = req.send().await.map_err(aws_err("kms:CreateKey"))?;
        let id = out
            .key_metadata()
            .map(|m| m.key_id().to_string())
            .ok_or_else(|| RotationError::Verification("CreateKey returned no key".into()))?;
        self.tag(&plan.key_id, &[(SUCCESSOR_TAG, &id)]).await?;
        Ok(id)
    }
}

/// The PKCS#11 mechanisms a wrapping algorithm uses inside the HSM.
fn mechanism(a: WrappingAlgorithm) -> &'static str {
    match a {
        WrappingAlgorithm::RsaesOaepSha256 => "CKM_AES_KEY_GEN, then CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256)",
        WrappingAlgorithm::RsaesOaepSha1 => "CKM_AES_KEY_GEN, then CKM_RSA_PKCS_OAEP (SHA-1, MGF1-SHA-1)",
        WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            "CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP_PAD under an ephemeral AES key, CKM_RSA_PKCS_OAEP (SHA-256) of that key"
        }
        WrappingAlgorithm::RsaAesKeyWrapSha1 => {
            "CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP_PAD under an ephemeral AES key, CKM_RSA_PKCS_OAEP (SHA-1) of that key"
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()))
        .unwrap_or_else(|_| "unknown".into())
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{:016x}", h.finish())
}
