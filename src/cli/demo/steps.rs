//! The demo's steps over the estate: its rotation requests and tags, every rule's periodic
//! evaluation as Lambda runs it, custody, and the auditor's reports on disk.
//!
//! Nothing here is used outside the demo.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_sdk_kms::types::Tag;
use chrono::Utc;
use kms_rotation_guard::audit::AuditRow;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::key::KeyLookup;
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::rotation::hsm::{WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{RotationRequest, Rotator};
use serde_json::json;

use super::{Workload, READER_ROLE, REGION, SECURITY};

/// The demo's rotations: LocalStack's ImportKeyMaterial rejects RSA_AES_KEY_WRAP_SHA_1
/// (which AWS accepts and SoftHSM can do), so the OAEP variant is pinned here.
pub(super) fn request(key: &str) -> RotationRequest {
    RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(key)
    }
}

pub(super) async fn tag(aws: &Aws, key: &str, k: &str, v: &str) -> anyhow::Result<()> {
    aws.kms().tag_resource().key_id(key).tags(Tag::builder().tag_key(k).tag_value(v).build()?).send().await?;
    Ok(())
}

pub(super) fn params() -> RuleParams {
    RuleParams { key_reader_role_name: Some(READER_ROLE.into()), ..RuleParams::default() }
}

/// `<stage>.html` (the organization report: every account on one page) and `<stage>.json`
/// (the estate export whose SHA-256 the page shows) in `dir`; returns their paths.
pub(super) fn write_report(
    dir: &Path,
    stage: &str,
    workloads: &[Workload],
    at: chrono::DateTime<Utc>,
    rows: &[AuditRow],
) -> anyhow::Result<Vec<PathBuf>> {
    use kms_rotation_guard::estate::{export, report, CoverageRow, CoverageStatus, EstateScan, ScanHeader};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = &dir.canonicalize()?;
    // Every account was evaluated by its own rule handlers: all of it was seen.
    let coverage = workloads
        .iter()
        .map(|w| CoverageRow {
            account: w.account.to_string(),
            region: REGION.to_string(),
            status: CoverageStatus::Scanned,
            reason: None,
            resources: rows.iter().filter(|r| r.account == w.account).count(),
        })
        .collect();
    let scan = EstateScan { rows: rows.to_vec(), coverage, unjudged: Vec::new(), keys: export::key_usage(rows) };
    let header = ScanHeader {
        scan_time: at,
        accounts: workloads.iter().map(|w| w.account.to_string()).collect(),
        regions: vec![REGION.to_string()],
        source: "rule handlers (periodic, TestMode)".into(),
    };
    let html = dir.join(format!("{stage}.html"));
    let json = dir.join(format!("{stage}.json"));
    let page = report::render(&header, &scan, &params(), &format!("{stage}.json"));
    std::fs::write(&html, &page.html).with_context(|| format!("cannot write {}", html.display()))?;
    std::fs::write(&json, &page.json).with_context(|| format!("cannot write {}", json.display()))?;
    Ok(vec![html, json])
}

/// Whether SoftHSM holds each key's current material, as `scan --hsm` reports it: the keys
/// live in the security account, where the rotator's credentials act.
pub(super) async fn custody(rows: &mut [AuditRow], rotator: &Rotator<'_>) {
    for note in kms_rotation_guard::audit::fill_custody(rows, rotator, SECURITY).await {
        eprintln!("   warning: {note}");
    }
}

/// Every rule's periodic handler in every workload account, as Lambda runs it.
pub(super) async fn evaluate(workloads: &[Workload], now: chrono::DateTime<Utc>) -> anyhow::Result<Vec<AuditRow>> {
    let params = params();
    let mut rows = Vec::new();
    for w in workloads {
        for rule in kms_rotation_guard::rule::ALL {
            let payload = json!({
                "version": "1.0",
                "invokingEvent": json!({
                    "awsAccountId": w.account,
                    "notificationCreationTime": now.to_rfc3339(),
                    "messageType": "ScheduledNotification",
                    "recordVersion": "1.0"
                }).to_string(),
                "ruleParameters": json!({ "keyReaderRoleName": READER_ROLE }).to_string(),
                "resultToken": "TESTMODE",
                "eventLeftScope": false,
                "configRuleName": rule.name,
                "accountId": w.account,
            });
            let outcome = kms_rotation_guard::handler::handle(&w.aws, rule, payload, now, None).await?;
            rows.extend(outcome.assessments.iter().map(|a| AuditRow::new(a, &params, now)));
            // The key lookups must have reached the security account through the role.
            debug_assert!(outcome
                .assessments
                .iter()
                .all(|a| !matches!(a.lookup.as_deref(), Some(KeyLookup::Denied(_)))));
        }
    }
    rows.sort_by(|a, b| {
        (&a.account, &a.resource_type, &a.resource_name).cmp(&(&b.account, &b.resource_type, &b.resource_name))
    });
    Ok(rows)
}
