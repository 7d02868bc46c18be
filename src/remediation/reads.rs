//! The KMS reads the gate and the claim need: the key's facts (the rule's own lookup, in the
//! key's account), its rotation history, its tags. Reads only; every failure becomes a
//! [`RemediationError`] that says whether a retry can help.

use std::collections::BTreeMap;

use aws_sdk_kms::types::IncludeKeyMaterial;
use chrono::{DateTime, Utc};

use super::RemediationError;
use crate::aws::{classify, Aws, FailureKind};
use crate::key::lookup::KeyReader;
use crate::key::{Fact, Home, KeyFacts, KeyLookup, KeyManager, KeyRef, Rotation};
use crate::params::RuleParams;

/// The key as the gate needs it: the rule's key facts, and the dates of its ON_DEMAND
/// rotations. `Ok(None)`: KMS has no such key.
pub async fn read_key(
    aws: &Aws,
    key: &str,
    p: &RuleParams,
) -> Result<Option<(KeyFacts, Fact<Vec<DateTime<Utc>>>)>, RemediationError> {
    let reference = KeyRef::parse(key).map_err(|e| RemediationError::MalformedPayload(format!("keyId: {e}")))?;
    if reference.is_aws_managed_alias() {
        let mut f = KeyFacts::new(key, "", "AWS_KMS");
        f.key_arn = key.to_string();
        f.manager = KeyManager::Aws;
        return Ok(Some((f, Fact::NotRead)));
    }
    // The rotation runs in the key's own account with its own role: no reader role, and
    // every read is a same-account read. A reference without an account (alias, key id) is
    // resolved first, so the reader knows whose key it is.
    let (reference, own) = match &reference {
        KeyRef::KeyArn(a) => (reference.clone(), a.account.clone()),
        _ => match aws.kms().describe_key().key_id(key).send().await {
            Ok(out) => match out.key_metadata().and_then(|m| m.arn()).map(KeyRef::parse) {
                Some(Ok(r @ KeyRef::KeyArn(_))) => {
                    let KeyRef::KeyArn(a) = &r else { unreachable!() };
                    let account = a.account.clone();
                    (r, account)
                }
                _ => {
                    return Err(RemediationError::Aws {
                        operation: "kms:DescribeKey",
                        transient: false,
                        message: "the response had no key ARN".into(),
                    })
                }
            },
            Err(e) if classify(&e).kind == FailureKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err("kms:DescribeKey")(e)),
        },
    };
    let read_params = RuleParams { key_reader_role_name: None, verify_tag_against_kms: false, ..p.clone() };
    let home = Home::new(aws.region(), own.clone());
    let reader = KeyReader::new(aws, &read_params, &own);
    let looked = reader.look_up_all([(&reference, &home)]).await.map_err(|e| match e {
        crate::Error::Aws { operation, transient, message } => RemediationError::Aws { operation, transient, message },
        other => RemediationError::Aws { operation: "kms:DescribeKey", transient: false, message: other.to_string() },
    })?;
    let looked = looked.into_values().next().map(std::sync::Arc::unwrap_or_clone);
    let mut facts = match looked {
        Some(KeyLookup::Found(f)) => *f,
        Some(KeyLookup::NotFound) => return Ok(None),
        Some(KeyLookup::Denied(d)) => {
            return Err(RemediationError::AccessDenied { operation: d.action, message: d.hint })
        }
        Some(KeyLookup::AwsManagedAlias) | None => {
            let mut f = KeyFacts::new(key, &own, "AWS_KMS");
            f.key_arn = key.to_string();
            f.manager = KeyManager::Aws;
            return Ok(Some((f, Fact::NotRead)));
        }
    };
    let mut on_demand = Fact::NotRead;
    if facts.state == "Enabled" && facts.manager == KeyManager::Customer {
        let (rotations, dates) = rotation_history(aws, &facts.key_arn).await?;
        if p.verify_tag_against_kms {
            facts.rotations = rotations;
        }
        on_demand = dates;
    }
    Ok(Some((facts, on_demand)))
}

type History = (Fact<Vec<Rotation>>, Fact<Vec<DateTime<Utc>>>);

/// ListKeyRotations with every material: the rule's rotation facts and the ON_DEMAND dates.
async fn rotation_history(aws: &Aws, key_arn: &str) -> Result<History, RemediationError> {
    let mut rotations = Vec::new();
    let mut on_demand = Vec::new();
    let mut marker = None;
    loop {
        let out = aws
            .kms()
            .list_key_rotations()
            .key_id(key_arn)
            .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
            .set_marker(marker)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let f = classify(&e);
                return match f.kind {
                    FailureKind::Unsupported => {
                        let why = "kms:ListKeyRotations is not implemented by this endpoint".to_string();
                        Ok((Fact::Unsupported(why.clone()), Fact::Unsupported(why)))
                    }
                    FailureKind::Denied => Err(RemediationError::AccessDenied {
                        operation: "kms:ListKeyRotations".into(),
                        message: format!("{}; the rotation role needs it to count on-demand rotations", f.message),
                    }),
                    _ => Err(RemediationError::Aws {
                        operation: "kms:ListKeyRotations",
                        transient: f.kind == FailureKind::Transient,
                        message: f.message,
                    }),
                };
            }
        };
        for r in out.rotations() {
            let rotation = crate::key::lookup::rotation_of(r);
            if r.rotation_type().map(|t| t.as_str()) == Some("ON_DEMAND") {
                on_demand.extend(rotation.date);
            }
            rotations.push(rotation);
        }
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok((Fact::Known(rotations), Fact::Known(on_demand)));
        }
    }
}

pub(super) async fn key_tags(aws: &Aws, key_arn: &str) -> Result<BTreeMap<String, String>, RemediationError> {
    crate::aws::key_tags(aws.kms(), key_arn).await.map_err(read_err("kms:ListResourceTags"))
}

pub(super) fn read_err<E>(
    operation: &'static str,
) -> impl FnOnce(
    aws_sdk_kms::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> RemediationError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let f = classify(&e);
        match f.kind {
            FailureKind::Denied => RemediationError::AccessDenied { operation: operation.into(), message: f.message },
            kind => RemediationError::Aws { operation, transient: kind == FailureKind::Transient, message: f.message },
        }
    }
}
