//! Key facts kept across the invocations of a warm rule Lambda, so that an organization's
//! rules read each key's tags and rotations about once for the whole estate instead of once
//! per member account and rule (the function is invoked for every member: 100 accounts ×
//! 3 rules would read each key 300 times a cycle from the one security account, whose KMS
//! request quota they share).
//!
//! What is kept is only what the optional reads return (tags, rotations, rotation status).
//! DescribeKey is still called on every invocation, and a kept entry is used only while:
//! - DescribeKey says exactly what it said when the entry was read (state, current
//!   material, its expiry, …): a rotation, an import, a disable or a deletion ends it;
//! - it is younger than the time to live;
//! - it was worth keeping: an Enabled key whose DescribeKey names its current material,
//!   tags and rotations both read, no material rotated in the last hour and none waiting
//!   to become current. Around a rotation (the only moment these facts
//!   change in the normal course) every invocation reads afresh, so a rotation that has
//!   just happened, or is half done, is never judged from a kept copy.
//!
//! A tag edited by hand without a rotation is seen at the latest one time to live later.
//! Denials are never kept: a permission fixed is seen on the next invocation.
//!
//! Only the rule Lambdas use it (`lambda::run_rule`); the CLI, the scan (which reads each key
//! once anyway), the remediation gate and the runbook always read afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::facts::{Fact, KeyFacts};

/// How long a kept entry may serve, unless `KRG_KEY_FACTS_TTL_SECONDS` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// Material imported or rotated this recently makes a key's facts not worth keeping.
const SETTLING: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Everything besides the key that changes what the optional reads return.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Scope {
    pub key_arn: String,
    /// Read through this role in the key's account (or with the caller's own credentials).
    pub reader_role: Option<String>,
    /// The key's account is the caller's own (same-account reads).
    pub local: bool,
    pub verify_tag_against_kms: bool,
}

struct Entry {
    at: Instant,
    /// The facts DescribeKey gave when the entry was read.
    described: KeyFacts,
    completed: KeyFacts,
}

pub struct FactsCache {
    ttl: Duration,
    entries: Mutex<HashMap<Scope, Entry>>,
    /// One reader at a time per key: invocations that miss together wait for the first.
    filling: Mutex<HashMap<Scope, Arc<tokio::sync::Mutex<()>>>>,
}

impl FactsCache {
    pub fn new(ttl: Duration) -> FactsCache {
        FactsCache { ttl, entries: Mutex::new(HashMap::new()), filling: Mutex::new(HashMap::new()) }
    }

    /// Held while one invocation reads `scope`'s key for the cache.
    pub(super) fn fill_lock(&self, scope: &Scope) -> Arc<tokio::sync::Mutex<()>> {
        self.filling.lock().expect("facts cache poisoned").entry(scope.clone()).or_default().clone()
    }

    /// The kept facts for `scope`, if DescribeKey still says `described` and they are fresh.
    pub(super) fn get(&self, scope: &Scope, described: &KeyFacts) -> Option<KeyFacts> {
        let entries = self.entries.lock().expect("facts cache poisoned");
        let e = entries.get(scope)?;
        (e.at.elapsed() < self.ttl && e.described == *described).then(|| e.completed.clone())
    }

    /// Keeps `completed` (read after DescribeKey said `described`) if it is worth keeping.
    pub(super) fn put(&self, scope: Scope, described: KeyFacts, completed: &KeyFacts, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().expect("facts cache poisoned");
        if keepable(completed, now) {
            entries.insert(scope, Entry { at: Instant::now(), described, completed: completed.clone() });
        } else {
            entries.remove(&scope);
        }
    }
}

/// Whether a key's completed facts may serve later invocations (see the module's notes).
pub(super) fn keepable(f: &KeyFacts, now: DateTime<Utc>) -> bool {
    let Fact::Known(rotations) = &f.rotations else { return false };
    f.state == "Enabled"
        // Without the current material's id DescribeKey could not show a rotation.
        && f.current_material_id.is_some()
        && matches!(f.tags, Fact::Known(_))
        && !matches!(f.auto_rotation, Fact::Denied(_))
        && rotations.iter().all(|r| match r.date {
            Some(d) => now - d > SETTLING,
            // A key's first material has no rotation date; material waiting to become
            // current (PENDING_ROTATION, PENDING_MULTI_REGION_IMPORT_AND_ROTATION) is a
            // rotation under way.
            None => !r.material_state.as_deref().is_some_and(|s| s.starts_with("PENDING")),
        })
}

static PROCESS: OnceLock<FactsCache> = OnceLock::new();

/// Turns the process's cache on (a rule Lambda at start), for `ttl`; zero leaves it off.
pub fn enable_for_process(ttl: Duration) {
    if !ttl.is_zero() {
        let _ = PROCESS.set(FactsCache::new(ttl));
    }
}

/// The process's cache, when a rule Lambda turned it on.
pub fn process() -> Option<&'static FactsCache> {
    PROCESS.get()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::key::facts::{KeyManager, Rotation};

    fn facts(rotated_days_ago: Option<i64>, now: DateTime<Utc>) -> KeyFacts {
        KeyFacts {
            key_arn: "arn:aws:kms:eu-west-1:111111111111:key/k".into(),
            key_id: "k".into(),
            account: "111111111111".into(),
            state: "Enabled".into(),
            origin: "EXTERNAL".into(),
            manager: KeyManager::Customer,
            created: None,
            expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
            valid_to: None,
            current_material_id: Some("m1".into()),
            multi_region: false,
            tags: Fact::Known(BTreeMap::from([("LastRotationDate".into(), "2026-01-01".into())])),
            rotations: Fact::Known(
                rotated_days_ago
                    .map(|d| Rotation {
                        date: Some(now - chrono::TimeDelta::days(d)),
                        material_id: Some("m1".into()),
                        material_state: Some("CURRENT".into()),
                        expiration_model: None,
                        valid_to: None,
                    })
                    .into_iter()
                    .collect(),
            ),
            auto_rotation: Fact::NotRead,
        }
    }

    fn scope() -> Scope {
        Scope {
            key_arn: "arn:aws:kms:eu-west-1:111111111111:key/k".into(),
            reader_role: Some("arn:aws:iam::111111111111:role/r".into()),
            local: false,
            verify_tag_against_kms: true,
        }
    }

    #[test]
    fn kept_facts_serve_only_while_describe_key_agrees_and_they_are_fresh() {
        let now = Utc::now();
        let cache = FactsCache::new(Duration::from_secs(60));
        let completed = facts(Some(200), now);
        let described = KeyFacts { tags: Fact::NotRead, rotations: Fact::NotRead, ..completed.clone() };
        cache.put(scope(), described.clone(), &completed, now);
        assert_eq!(cache.get(&scope(), &described), Some(completed.clone()));
        // Another scope (another reader role) does not see it.
        assert_eq!(cache.get(&Scope { reader_role: None, ..scope() }, &described), None);
        // A rotation changes the current material: the kept facts no longer serve.
        let rotated = KeyFacts { current_material_id: Some("m2".into()), ..described.clone() };
        assert_eq!(cache.get(&scope(), &rotated), None);
        let disabled = KeyFacts { state: "Disabled".into(), ..described.clone() };
        assert_eq!(cache.get(&scope(), &disabled), None);
        // Past its time to live.
        let short = FactsCache::new(Duration::ZERO);
        short.put(scope(), described.clone(), &completed, now);
        assert_eq!(short.get(&scope(), &described), None);
    }

    #[test]
    fn only_settled_fully_read_facts_of_an_enabled_key_are_kept() {
        let now = Utc::now();
        assert!(keepable(&facts(Some(200), now), now));
        assert!(keepable(&facts(None, now), now), "no rotation listed yet");
        // Material rotated or imported within the hour: read afresh until it settles.
        assert!(!keepable(&facts(Some(0), now), now));
        let undated = KeyFacts {
            rotations: Fact::Known(vec![Rotation {
                date: None,
                material_id: None,
                material_state: Some("PENDING_ROTATION".into()),
                expiration_model: None,
                valid_to: None,
            }]),
            ..facts(None, now)
        };
        assert!(!keepable(&undated, now), "material pending rotation: a rotation under way");
        let first = KeyFacts {
            rotations: Fact::Known(vec![Rotation {
                date: None,
                material_id: Some("m1".into()),
                material_state: Some("CURRENT".into()),
                expiration_model: None,
                valid_to: None,
            }]),
            ..facts(None, now)
        };
        assert!(keepable(&first, now), "the first material, never rotated, has no rotation date");
        let not_listed = KeyFacts { rotations: Fact::NotRead, ..facts(None, now) };
        assert!(!keepable(&not_listed, now), "without the listing a rotation cannot be seen");
        let denied = KeyFacts {
            tags: Fact::Denied(crate::key::facts::Denial { action: "kms:ListResourceTags".into(), hint: "x".into() }),
            ..facts(Some(200), now)
        };
        assert!(!keepable(&denied, now), "a denial may be fixed any moment");
        assert!(!keepable(&KeyFacts { state: "PendingImport".into(), ..facts(Some(200), now) }, now));
        let no_material_id = KeyFacts { current_material_id: None, ..facts(Some(200), now) };
        assert!(!keepable(&no_material_id, now), "DescribeKey could not show a rotation");
        // A refused entry replaces nothing stale: putting it removes what was kept.
        let cache = FactsCache::new(Duration::from_secs(60));
        let described = KeyFacts { tags: Fact::NotRead, rotations: Fact::NotRead, ..facts(Some(200), now) };
        cache.put(scope(), described.clone(), &facts(Some(200), now), now);
        cache.put(scope(), described.clone(), &facts(Some(0), now), now);
        assert_eq!(cache.get(&scope(), &described), None);
    }
}
