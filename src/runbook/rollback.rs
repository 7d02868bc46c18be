//! `rollback --key …`: undo what can be undone.
//!
//! - After an alias swap, the alias goes back to the key it replaced: the successor names
//!   it in its `KmsRotationGuardPredecessor` tag (the rotation record). That key is made
//!   usable first (a pending deletion cancelled, the key enabled), then the alias moves. The
//!   successor stays Enabled: whatever it encrypted since the swap must still decrypt.
//! - After an in-place rotation there is nothing to undo, and nothing is changed: KMS
//!   cannot make older material current again, and every older ciphertext still decrypts.
//! - Given a key that `retire` disabled (or scheduled for deletion), it is made usable again.
//!
//! [`decide`] is pure; [`run`] reads, decides, then writes in an order that a re-run
//! completes (the rollback tag first, then enable, then the alias), so it is idempotent.

use std::collections::BTreeMap;

use aws_sdk_kms::types::Tag;
use chrono::{DateTime, Utc};

use super::{aws_err, stamp, RunbookError, RETIREMENT_TAG, ROLLBACK_TAG};
use crate::aws::{classify, Aws, FailureKind};
use crate::key::KeyRef;
use crate::rotation::{MATERIAL_TAG, PREDECESSOR_TAG, SUCCESSOR_TAG};

/// A key as the rollback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub arn: String,
    pub id: String,
    /// Enabled, Disabled, PendingDeletion, …
    pub state: String,
    pub tags: BTreeMap<String, String>,
}

/// What the rollback will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Make `to` usable (cancel deletion, enable) and point `alias` from `from` back to it.
    SwapBack {
        alias: String,
        from: String,
        to: String,
        cancel_deletion: bool,
        enable: bool,
    },
    /// The alias already points back (an earlier rollback); only make sure the key is usable.
    AlreadyBack {
        alias: String,
        key: String,
        cancel_deletion: bool,
        enable: bool,
    },
    /// A key `retire` took out of use: make it usable again; no alias moves.
    Reenable {
        key: String,
        cancel_deletion: bool,
        enable: bool,
    },
    /// In place: nothing can or need be undone; the message says why.
    InPlace {
        key: String,
        message: String,
    },
    Refuse(String),
}

fn usable(k: &KeyState) -> (bool, bool) {
    let cancel = k.state == "PendingDeletion";
    let enable = cancel || k.state == "Disabled";
    (cancel, enable)
}

/// The in-place answer, exactly.
pub fn in_place_message(key: &str, material: Option<&str>) -> String {
    format!(
        "{key} was rotated in place{}: KMS cannot make older key material current again (RotateKeyOnDemand \
         cannot be undone), so there is no rollback. Nothing is lost: every ciphertext made before the rotation \
         still decrypts, because KMS keeps every material of the key and each ciphertext names its own. Nothing \
         was changed. If a workload fails since the rotation, look at its grants, key policy or cached data keys \
         (the watcher's alert names the caller).",
        material.map(|m| format!(" (current material {m})")).unwrap_or_default()
    )
}

/// Pure: `alias` (if the key was named by one), the key it points at, and that key's
/// predecessor (when the key names one) give the plan.
pub fn decide(alias: Option<&str>, target: &KeyState, predecessor: Option<&KeyState>) -> Plan {
    let Some(alias) = alias else {
        // A key given directly: only a retired (replaced) key can be brought back.
        if !target.tags.contains_key(SUCCESSOR_TAG) {
            return Plan::Refuse(format!(
                "{} was not replaced by an alias swap (no {SUCCESSOR_TAG} tag): give the alias \
                 (rollback --key alias/…) to roll an alias swap back",
                target.arn
            ));
        }
        let (cancel_deletion, enable) = usable(target);
        return Plan::Reenable { key: target.arn.clone(), cancel_deletion, enable };
    };
    if let Some(pred_arn) = target.tags.get(PREDECESSOR_TAG) {
        let Some(pred) = predecessor else {
            return Plan::Refuse(format!(
                "{alias} points at {}, which replaced {pred_arn}, but that key cannot be found: \
                 it was deleted, and nothing can bring it back",
                target.arn
            ));
        };
        if pred.tags.get(SUCCESSOR_TAG) != Some(&target.id) {
            return Plan::Refuse(format!(
                "{alias} points at {} whose record names {} as its predecessor, but that key does not name it as \
                 its successor ({SUCCESSOR_TAG}={}): the records disagree, so nothing is moved",
                target.arn,
                pred.arn,
                pred.tags.get(SUCCESSOR_TAG).map(String::as_str).unwrap_or("absent")
            ));
        }
        let (cancel_deletion, enable) = usable(pred);
        return Plan::SwapBack {
            alias: alias.into(),
            from: target.arn.clone(),
            to: pred.arn.clone(),
            cancel_deletion,
            enable,
        };
    }
    if target.tags.contains_key(SUCCESSOR_TAG) && target.tags.contains_key(ROLLBACK_TAG) {
        let (cancel_deletion, enable) = usable(target);
        return Plan::AlreadyBack { alias: alias.into(), key: target.arn.clone(), cancel_deletion, enable };
    }
    if target.tags.contains_key(SUCCESSOR_TAG) {
        return Plan::Refuse(format!(
            "{alias} still points at {}, the key being replaced: the alias swap did not complete, so there is \
             nothing to roll back (run the rotation again to finish it)",
            target.arn
        ));
    }
    if target.tags.contains_key(MATERIAL_TAG) {
        return Plan::InPlace {
            key: target.arn.clone(),
            message: in_place_message(&target.arn, target.tags.get(MATERIAL_TAG).map(String::as_str)),
        };
    }
    Plan::Refuse(format!("{alias} points at {}, which has no rotation recorded: nothing to roll back", target.arn))
}

/// What a rollback did (the record; also printed as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    pub outcome: String,
    pub alias: Option<String>,
    pub from_key: Option<String>,
    pub to_key: Option<String>,
    pub cancelled_deletion: bool,
    pub re_enabled: bool,
    /// True when nothing was changed (in place, or already rolled back and usable).
    pub unchanged: bool,
    pub message: String,
    pub at: DateTime<Utc>,
}

async fn read(aws: &Aws, key: &str) -> Result<Option<KeyState>, RunbookError> {
    let m = match aws.kms().describe_key().key_id(key).send().await {
        Ok(o) => o,
        Err(e) if classify(&e).kind == FailureKind::NotFound => return Ok(None),
        Err(e) => return Err(aws_err("kms:DescribeKey")(e)),
    };
    let Some(m) = m.key_metadata() else { return Ok(None) };
    let arn = m.arn().unwrap_or_default().to_string();
    let mut tags = BTreeMap::new();
    let mut marker = None;
    loop {
        let out = aws
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
    Ok(Some(KeyState {
        arn,
        id: m.key_id().to_string(),
        state: m.key_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        tags,
    }))
}

pub(crate) async fn read_key(aws: &Aws, key: &str) -> Result<Option<KeyState>, RunbookError> {
    read(aws, key).await
}

async fn make_usable(aws: &Aws, key: &str, cancel: bool, enable: bool) -> Result<(), RunbookError> {
    if cancel {
        aws.kms().cancel_key_deletion().key_id(key).send().await.map_err(aws_err("kms:CancelKeyDeletion"))?;
    }
    if enable {
        aws.kms().enable_key().key_id(key).send().await.map_err(aws_err("kms:EnableKey"))?;
    }
    // No longer being retired: a later `retire` starts again from its first check.
    if cancel || enable {
        aws.kms()
            .untag_resource()
            .key_id(key)
            .tag_keys(RETIREMENT_TAG)
            .send()
            .await
            .map_err(aws_err("kms:UntagResource"))?;
    }
    Ok(())
}

/// Reads, decides and does the rollback of `key` (an alias, or a key `retire` took out).
pub async fn run(aws: &Aws, key: &str, dry_run: bool) -> Result<RollbackRecord, RunbookError> {
    let reference = KeyRef::parse(key).map_err(|e| RunbookError::Input(e.to_string()))?;
    let alias = match &reference {
        KeyRef::AliasName(_) | KeyRef::AliasArn(_) => Some(reference.short().to_string()),
        _ => None,
    };
    let Some(target) = read(aws, key).await? else {
        return Err(RunbookError::Refused(format!("{key} not found in this account and Region")));
    };
    let predecessor = match target.tags.get(PREDECESSOR_TAG) {
        Some(p) if alias.is_some() => read(aws, p).await?,
        _ => None,
    };
    let plan = decide(alias.as_deref(), &target, predecessor.as_ref());
    let now = Utc::now();
    let mut record = RollbackRecord {
        outcome: String::new(),
        alias: alias.clone(),
        from_key: None,
        to_key: None,
        cancelled_deletion: false,
        re_enabled: false,
        unchanged: true,
        message: String::new(),
        at: now,
    };
    match plan {
        Plan::Refuse(why) => return Err(RunbookError::Refused(why)),
        Plan::InPlace { key, message } => {
            record.outcome = "in-place: no rollback".into();
            record.to_key = Some(key);
            record.message = message;
        }
        Plan::Reenable { key, cancel_deletion, enable } => {
            record.outcome = "re-enabled".into();
            record.to_key = Some(key.clone());
            record.cancelled_deletion = cancel_deletion;
            record.re_enabled = enable;
            record.unchanged = !(cancel_deletion || enable);
            record.message = if record.unchanged {
                format!("{key} is already usable ({})", target.state)
            } else {
                format!("{key} is usable again{}", if cancel_deletion { " (its deletion was cancelled)" } else { "" })
            };
            if !dry_run {
                make_usable(aws, &key, cancel_deletion, enable).await?;
            }
        }
        Plan::AlreadyBack { alias, key, cancel_deletion, enable } => {
            record.outcome = "already rolled back".into();
            record.to_key = Some(key.clone());
            record.cancelled_deletion = cancel_deletion;
            record.re_enabled = enable;
            record.unchanged = !(cancel_deletion || enable);
            record.message = format!("{alias} already points back at {key}");
            if !dry_run {
                make_usable(aws, &key, cancel_deletion, enable).await?;
            }
        }
        Plan::SwapBack { alias, from, to, cancel_deletion, enable } => {
            record.outcome = "rolled back".into();
            record.from_key = Some(from.clone());
            record.to_key = Some(to.clone());
            record.cancelled_deletion = cancel_deletion;
            record.re_enabled = enable;
            record.unchanged = false;
            record.message = format!(
                "{alias} points at {to} again; {from} stays Enabled, so what it encrypted since the swap still decrypts"
            );
            if !dry_run {
                let from_id = from.rsplit('/').next().unwrap_or(&from).to_string();
                let tag = Tag::builder()
                    .tag_key(ROLLBACK_TAG)
                    .tag_value(format!("{} from {from_id}", stamp(now)))
                    .build()
                    .expect("key and value set");
                aws.kms().tag_resource().key_id(&to).tags(tag).send().await.map_err(aws_err("kms:TagResource"))?;
                make_usable(aws, &to, cancel_deletion, enable).await?;
                let to_id = to.rsplit('/').next().unwrap_or(&to).to_string();
                aws.kms()
                    .update_alias()
                    .alias_name(&alias)
                    .target_key_id(&to_id)
                    .send()
                    .await
                    .map_err(aws_err("kms:UpdateAlias"))?;
            }
        }
    }
    if !dry_run && !record.unchanged {
        tracing::info!(
            target: "audit",
            alias = record.alias.as_deref().unwrap_or("none"),
            from_key = record.from_key.as_deref().unwrap_or("none"),
            to_key = record.to_key.as_deref().unwrap_or("none"),
            cancelled_deletion = record.cancelled_deletion,
            re_enabled = record.re_enabled,
            "rollback"
        );
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, state: &str, tags: &[(&str, &str)]) -> KeyState {
        KeyState {
            arn: format!("arn:aws:kms:eu-west-1:111111111111:key/{id}"),
            id: id.into(),
            state: state.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn an_alias_swap_goes_back_to_the_recorded_predecessor_enabling_it() {
        let old = key("old", "Disabled", &[(SUCCESSOR_TAG, "new")]);
        let new = key("new", "Enabled", &[(PREDECESSOR_TAG, &old.arn)]);
        assert_eq!(
            decide(Some("alias/a"), &new, Some(&old)),
            Plan::SwapBack {
                alias: "alias/a".into(),
                from: new.arn.clone(),
                to: old.arn.clone(),
                cancel_deletion: false,
                enable: true
            }
        );
        let pending = key("old", "PendingDeletion", &[(SUCCESSOR_TAG, "new")]);
        assert!(matches!(
            decide(Some("alias/a"), &new, Some(&pending)),
            Plan::SwapBack { cancel_deletion: true, enable: true, .. }
        ));
    }

    #[test]
    fn a_second_run_changes_nothing_more() {
        let back = key("old", "Enabled", &[(SUCCESSOR_TAG, "new"), (ROLLBACK_TAG, "x")]);
        assert_eq!(
            decide(Some("alias/a"), &back, None),
            Plan::AlreadyBack { alias: "alias/a".into(), key: back.arn.clone(), cancel_deletion: false, enable: false }
        );
    }

    #[test]
    fn in_place_says_exactly_why_and_changes_nothing() {
        let k = key("k", "Enabled", &[(MATERIAL_TAG, "m2")]);
        let Plan::InPlace { message, .. } = decide(Some("alias/a"), &k, None) else { panic!() };
        assert!(message.contains("KMS cannot make older key material current again"));
        assert!(message.contains("every ciphertext made before the rotation still decrypts"));
    }

    #[test]
    fn refuses_what_the_records_do_not_support() {
        let never = key("k", "Enabled", &[]);
        assert!(matches!(decide(Some("alias/a"), &never, None), Plan::Refuse(_)));
        let mid_swap = key("old", "Enabled", &[(SUCCESSOR_TAG, "new")]);
        assert!(matches!(decide(Some("alias/a"), &mid_swap, None), Plan::Refuse(_)));
        let old = key("old", "Enabled", &[(SUCCESSOR_TAG, "other")]);
        let new = key("new", "Enabled", &[(PREDECESSOR_TAG, &old.arn)]);
        assert!(matches!(decide(Some("alias/a"), &new, Some(&old)), Plan::Refuse(_)));
        assert!(matches!(decide(None, &never, None), Plan::Refuse(_)));
    }
}
