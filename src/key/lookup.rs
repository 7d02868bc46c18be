//! Reads key facts from KMS: one DescribeKey per distinct reference and one set of
//! optional reads (tags, rotations, rotation status) per distinct key, however many
//! resources share it. Denials become facts (findings); transient failures become errors.
//!
//! It never judges: what it could not read is a fact for the verdict, not a verdict.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_kms::types::{IncludeKeyMaterial, KeyManagerType};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{OnceCell, Semaphore};

use super::cache::{FactsCache, Scope};
use super::facts::{AutoRotation, Denial, Fact, KeyFacts, KeyLookup, KeyManager, Rotation};
use super::reference::{partition_of, Home, KeyRef};
use crate::aws::{classify, to_chrono, Aws, FailureKind};
use crate::error::Error;
use crate::params::RuleParams;

/// Keys are read this many at a time: KMS's shared request quota is per account, and the
/// evaluators of every account read the same security-account keys.
const CONCURRENCY: usize = 8;

/// A KMS client for one key account, or why there is none.
type AccountClient = Result<aws_sdk_kms::Client, Denial>;

/// Per-invocation key reader: fresh facts every run, credentials cached per account.
pub struct KeyReader<'a> {
    aws: &'a Aws,
    params: &'a RuleParams,
    own_account: String,
    clients: Mutex<HashMap<String, Arc<OnceCell<AccountClient>>>>,
    /// Accounts whose keys are read with a client given by the caller (a member role in an
    /// organization): their keys are same-account reads, like the own account's.
    local: Mutex<std::collections::HashSet<String>>,
    /// One DescribeKey per distinct reference, whoever asks first; the others wait for it.
    by_reference: Mutex<HashMap<String, Arc<OnceCell<Arc<KeyLookup>>>>>,
    /// One set of optional reads per distinct key, however many spellings name it.
    by_key: Mutex<HashMap<String, Arc<OnceCell<KeyFacts>>>>,
    /// Keys read at once, across every caller.
    in_flight: Semaphore,
    /// Tags and rotations kept across invocations of a warm rule Lambda (`key::cache`).
    kept: Option<&'static FactsCache>,
}

impl<'a> KeyReader<'a> {
    pub fn new(aws: &'a Aws, params: &'a RuleParams, own_account: &str) -> Self {
        KeyReader {
            aws,
            params,
            own_account: own_account.to_string(),
            clients: Mutex::new(HashMap::new()),
            local: Mutex::new(std::collections::HashSet::new()),
            by_reference: Mutex::new(HashMap::new()),
            by_key: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(CONCURRENCY),
            kept: None,
        }
    }

    /// Serves a key's tags and rotations from `cache` while DescribeKey says the key is
    /// unchanged (see `key::cache` for when they are kept and for how long).
    pub fn keeping(mut self, cache: Option<&'static FactsCache>) -> Self {
        self.kept = cache;
        self
    }

    fn scope_of(&self, f: &KeyFacts) -> Scope {
        let local = self.is_local(&f.account);
        let partition = f.key_arn.split(':').nth(1).unwrap_or("aws");
        Scope {
            key_arn: f.key_arn.clone(),
            reader_role: if local { None } else { self.reader_role_arn(&f.account, partition) },
            local,
            verify_tag_against_kms: self.params.verify_tag_against_kms,
        }
    }

    /// Reads the keys of `account` with `kms` (a client acting in that account, e.g. through
    /// an organization's member role) instead of the reader role or our own credentials.
    /// Registered before the first lookup of that account's keys.
    pub fn read_account_with(&self, account: &str, kms: aws_sdk_kms::Client) {
        let cell = OnceCell::new_with(Some(Ok(kms)));
        self.clients.lock().expect("client cache poisoned").insert(account.to_string(), Arc::new(cell));
        self.local.lock().expect("local accounts poisoned").insert(account.to_string());
    }

    fn is_local(&self, account: &str) -> bool {
        account == self.own_account || self.local.lock().expect("local accounts poisoned").contains(account)
    }

    /// Looks one reference up, once per invocation: a sweep calls this as each resource
    /// arrives, so key reads overlap the enumeration instead of following it.
    pub async fn look_up(&self, r: &KeyRef, home: &Home) -> Result<Arc<KeyLookup>, Error> {
        let cell = {
            let mut m = self.by_reference.lock().expect("lookup cache poisoned");
            m.entry(r.qualified(home)).or_default().clone()
        };
        let lookup = cell
            .get_or_try_init(|| async {
                let described = {
                    let _permit = self.in_flight.acquire().await.expect("semaphore closed");
                    self.describe(r, home).await?
                };
                let KeyLookup::Found(f) = described else { return Ok::<_, Error>(Arc::new(described)) };
                let key_cell = {
                    let mut m = self.by_key.lock().expect("key cache poisoned");
                    m.entry(f.key_arn.clone()).or_default().clone()
                };
                let facts = key_cell
                    .get_or_try_init(|| async {
                        let Some(cache) = self.kept else {
                            let _permit = self.in_flight.acquire().await.expect("semaphore closed");
                            return self.complete(*f).await;
                        };
                        let scope = self.scope_of(&f);
                        if let Some(kept) = cache.get(&scope, &f) {
                            return Ok(kept);
                        }
                        let filling = cache.fill_lock(&scope);
                        let _one_reader = filling.lock().await;
                        if let Some(kept) = cache.get(&scope, &f) {
                            return Ok(kept);
                        }
                        let described = (*f).clone();
                        let _permit = self.in_flight.acquire().await.expect("semaphore closed");
                        let completed = self.complete(*f).await?;
                        cache.put(scope, described, &completed, chrono::Utc::now());
                        Ok(completed)
                    })
                    .await?;
                Ok(Arc::new(KeyLookup::Found(Box::new(facts.clone()))))
            })
            .await?;
        Ok(lookup.clone())
    }

    /// Looks up every distinct reference once. The map is keyed by [`KeyRef::qualified`].
    pub async fn look_up_all<'r>(
        &self,
        refs: impl IntoIterator<Item = (&'r KeyRef, &'r Home)>,
    ) -> Result<HashMap<String, Arc<KeyLookup>>, Error> {
        let mut distinct: BTreeMap<String, (KeyRef, Home)> = BTreeMap::new();
        for (r, home) in refs {
            distinct.entry(r.qualified(home)).or_insert_with(|| (r.clone(), home.clone()));
        }
        // Owned values in the futures: a stream closure lending borrows would not be
        // general enough for callers that spawn the handler.
        let lookups: Vec<_> = distinct
            .into_iter()
            .map(|(q, (r, home))| async move { Ok::<_, Error>((q, self.look_up(&r, &home).await?)) })
            .collect();
        futures_util::stream::iter(lookups).buffer_unordered(CONCURRENCY).try_collect().await
    }

    fn reader_role_arn(&self, account: &str, partition: &str) -> Option<String> {
        self.params.key_reader_role_name.as_ref().map(|n| format!("arn:{partition}:iam::{account}:role/{n}"))
    }

    /// The client that reads keys of `account`: our own credentials for our own account,
    /// else the key-reader role assumed in that account when one is configured.
    async fn client_for(&self, account: &str, partition: &str) -> Result<AccountClient, Error> {
        let given = self
            .clients
            .lock()
            .expect("client cache poisoned")
            .get(account)
            .filter(|_| self.is_local(account))
            .cloned();
        if let Some(client) = given.as_deref().and_then(OnceCell::get) {
            return Ok(client.clone());
        }
        let Some(role_arn) = self.reader_role_arn(account, partition).filter(|_| account != self.own_account) else {
            return Ok(Ok(self.aws.kms().clone()));
        };
        let cell = {
            let mut m = self.clients.lock().expect("client cache poisoned");
            m.entry(account.to_string()).or_default().clone()
        };
        let client = cell
            .get_or_try_init(|| async {
                // The process-wide cache in `Aws` keeps the role's credentials across warm
                // invocations; this cell only joins concurrent lookups of one invocation.
                match self.aws.kms_as_role(&role_arn, "kms-rotation-guard").await {
                    Ok(client) => Ok(Ok(client)),
                    Err(e) => {
                        let f = classify(&e);
                        match f.kind {
                            FailureKind::Denied => Ok(Err(Denial {
                                action: "sts:AssumeRole".into(),
                                hint: format!(
                                    "on {role_arn}: the role must exist and trust this account's evaluator role"
                                ),
                            })),
                            _ => Err(f.into_error("sts:AssumeRole")),
                        }
                    }
                }
            })
            .await?;
        Ok(client.clone())
    }

    async fn describe(&self, r: &KeyRef, home: &Home) -> Result<KeyLookup, Error> {
        if r.is_aws_managed_alias() {
            return Ok(KeyLookup::AwsManagedAlias);
        }
        let account = r.account_or(home).to_string();
        let partition = partition_of(&home.region);
        let client = match self.client_for(&account, partition).await? {
            Ok(c) => c,
            Err(denial) => return Ok(KeyLookup::Denied(denial)),
        };
        let out = match client.describe_key().key_id(r.to_string()).send().await {
            Ok(o) => o,
            Err(e) => {
                let f = classify(&e);
                return match f.kind {
                    FailureKind::NotFound => Ok(KeyLookup::NotFound),
                    FailureKind::Denied => Ok(KeyLookup::Denied(Denial {
                        action: "kms:DescribeKey".into(),
                        hint: self.grant_hint(&account, partition),
                    })),
                    _ => Err(f.into_error("kms:DescribeKey")),
                };
            }
        };
        let Some(m) = out.key_metadata() else {
            return Err(Error::Aws {
                operation: "kms:DescribeKey",
                transient: false,
                message: "response had no KeyMetadata".into(),
            });
        };
        let mut facts = KeyFacts::new(m.key_id(), m.aws_account_id().unwrap_or(&account), "");
        facts.key_arn = m.arn().map(str::to_string).unwrap_or_else(|| r.qualified(home));
        facts.state = m.key_state().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Unknown".into());
        facts.origin = m.origin().map(|o| o.as_str().to_string()).unwrap_or_else(|| "Unknown".into());
        facts.manager = match m.key_manager() {
            Some(KeyManagerType::Aws) => KeyManager::Aws,
            _ => KeyManager::Customer,
        };
        facts.created = m.creation_date().and_then(to_chrono);
        facts.expiration_model = m.expiration_model().map(|e| e.as_str().to_string());
        facts.valid_to = m.valid_to().and_then(to_chrono);
        facts.current_material_id = m.current_key_material_id().map(str::to_string);
        facts.multi_region = m.multi_region().unwrap_or(false);
        Ok(KeyLookup::Found(Box::new(facts)))
    }

    fn grant_hint(&self, account: &str, partition: &str) -> String {
        match self.reader_role_arn(account, partition).filter(|_| !self.is_local(account)) {
            Some(role) => format!("grant it to {role} in the key policy"),
            None => "grant it to the evaluator role in the key policy and IAM policy".into(),
        }
    }

    /// The optional reads the verdict may need, skipped when it cannot depend on them.
    async fn complete(&self, mut f: KeyFacts) -> Result<KeyFacts, Error> {
        if f.manager == KeyManager::Aws {
            return Ok(f);
        }
        let cross_account = !self.is_local(&f.account) && self.params.key_reader_role_name.is_none();
        if f.state == "PendingImport" && f.origin == "EXTERNAL" && !cross_account {
            // Imported material expired or was deleted: the listing says which must come back.
            let partition = f.key_arn.split(':').nth(1).unwrap_or("aws").to_string();
            if let Ok(client) = self.client_for(&f.account, &partition).await? {
                f.rotations = self.rotations(&client, &f).await?;
            }
            return Ok(f);
        }
        if f.state != "Enabled" {
            return Ok(f);
        }
        let partition = f.key_arn.split(':').nth(1).unwrap_or("aws").to_string();
        let client = match self.client_for(&f.account, &partition).await? {
            Ok(c) => c,
            Err(d) => {
                f.tags = Fact::Denied(d);
                return Ok(f);
            }
        };
        if f.origin == "AWS_KMS" {
            f.auto_rotation = self.rotation_status(&client, &f).await?;
        }
        if cross_account {
            // KMS serves tags and rotation history only to the key's own account.
            let hint = format!(
                "KMS does not allow it across accounts: set keyReaderRoleName to a role in account {}",
                f.account
            );
            f.tags = Fact::Denied(Denial { action: "kms:ListResourceTags".into(), hint: hint.clone() });
            f.rotations = Fact::Denied(Denial { action: "kms:ListKeyRotations".into(), hint });
            return Ok(f);
        }
        // Both reads at once: each is a round trip, and a key's verdict waits for both.
        // A key whose material KMS generated is judged by the age of that material, so its
        // rotation history is read whatever the rule's parameters.
        if f.origin == "AWS_KMS" {
            let (tags, rotations) = tokio::join!(self.tags(&client, &f), self.rotations(&client, &f));
            f.tags = tags?;
            f.rotations = rotations?;
        } else if self.params.verify_tag_against_kms || expiry_needs_listing(&f) {
            let (tags, rotations) = tokio::join!(self.tags(&client, &f), self.rotations(&client, &f));
            f.tags = tags?;
            // Rotations only matter once the tag is readable; a denial of the tags decides.
            // (An expiry is judged from DescribeKey's ValidTo alone when they are missing.)
            if matches!(f.tags, Fact::Known(_)) {
                f.rotations = rotations?;
            }
        } else {
            f.tags = self.tags(&client, &f).await?;
        }
        Ok(f)
    }

    async fn tags(&self, client: &aws_sdk_kms::Client, f: &KeyFacts) -> Result<Fact<BTreeMap<String, String>>, Error> {
        let mut tags = BTreeMap::new();
        let mut marker = None;
        loop {
            let out = client.list_resource_tags().key_id(&f.key_arn).set_marker(marker).send().await;
            let out = match out {
                Ok(o) => o,
                Err(e) => return self.optional(e, "kms:ListResourceTags", "kms:ListResourceTags", f),
            };
            for t in out.tags() {
                tags.insert(t.tag_key().to_string(), t.tag_value().to_string());
            }
            marker = out.next_marker().map(str::to_string);
            if !out.truncated() || marker.is_none() {
                return Ok(Fact::Known(tags));
            }
        }
    }

    async fn rotations(&self, client: &aws_sdk_kms::Client, f: &KeyFacts) -> Result<Fact<Vec<Rotation>>, Error> {
        let mut rotations = Vec::new();
        let mut marker = None;
        loop {
            let out = client
                .list_key_rotations()
                .key_id(&f.key_arn)
                .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
                .set_marker(marker)
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => return self.optional(e, "kms:ListKeyRotations", "kms:ListKeyRotations", f),
            };
            rotations.extend(out.rotations().iter().map(rotation_of));
            marker = out.next_marker().map(str::to_string);
            if !out.truncated() || marker.is_none() {
                return Ok(Fact::Known(rotations));
            }
        }
    }

    async fn rotation_status(&self, client: &aws_sdk_kms::Client, f: &KeyFacts) -> Result<Fact<AutoRotation>, Error> {
        match client.get_key_rotation_status().key_id(&f.key_arn).send().await {
            Ok(o) => Ok(Fact::Known(AutoRotation {
                enabled: o.key_rotation_enabled(),
                period_days: o.rotation_period_in_days().map(i64::from),
                next_rotation: o.next_rotation_date().and_then(to_chrono),
            })),
            Err(e) => self.optional(e, "kms:GetKeyRotationStatus", "kms:GetKeyRotationStatus", f),
        }
    }

    /// A failed optional read: a denial, "not implemented" and "not for this key" are
    /// facts, the rest an error.
    fn optional<T, E>(
        &self,
        e: aws_sdk_kms::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
        operation: &'static str,
        action: &str,
        f: &KeyFacts,
    ) -> Result<Fact<T>, Error>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let failure = classify(&e);
        match failure.kind {
            FailureKind::Denied => Ok(Fact::Denied(Denial {
                action: action.into(),
                hint: self.grant_hint(&f.account, f.key_arn.split(':').nth(1).unwrap_or("aws")),
            })),
            FailureKind::Unsupported => {
                // Not an AWS condition (LocalStack lacks ListKeyRotations); the verdict says
                // what it could not check, so this is information, not a warning.
                tracing::info!(operation, error = %failure.message, "endpoint does not implement this KMS call");
                Ok(Fact::Unsupported(format!("{operation} is not implemented by this endpoint")))
            }
            FailureKind::NotForThisResource => {
                // AWS's answer for keys in a custom key store: KMS cannot rotate them.
                tracing::info!(operation, key = %f.key_arn, error = %failure.message, "KMS does not support this call for the key");
                Ok(Fact::NotForThisKey(format!("{operation}: {}", failure.message)))
            }
            _ => Err(failure.into_error(operation)),
        }
    }
}

/// Whether DescribeKey says some material expires: then the listing names which one. Its
/// `ValidTo` is the earliest expiry of any permanently associated material (KeyMetadata), so
/// without it (and without KEY_MATERIAL_EXPIRES) no material expires and the call is saved.
fn expiry_needs_listing(f: &KeyFacts) -> bool {
    f.origin == "EXTERNAL" && (f.valid_to.is_some() || f.expiration_model.as_deref() == Some("KEY_MATERIAL_EXPIRES"))
}

/// One ListKeyRotations entry as plain facts (no SDK types past this module).
pub(crate) fn rotation_of(r: &aws_sdk_kms::types::RotationsListEntry) -> Rotation {
    Rotation {
        date: r.rotation_date().and_then(to_chrono),
        material_id: r.key_material_id().map(str::to_string),
        material_state: r.key_material_state().map(|s| s.as_str().to_string()),
        expiration_model: r.expiration_model().map(|s| s.as_str().to_string()),
        valid_to: r.valid_to().and_then(to_chrono),
    }
}
