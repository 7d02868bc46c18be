//! `campaign run`: the waves one after another. For each wave: the window must be open;
//! each key goes through the remediation gate (`rotate_if_needed`, never forced) with the
//! change id on its request; Config re-evaluates; the soak watches CloudTrail for failed
//! use of the wave's keys since the wave began and stops the campaign on any. A stop says
//! what to do; a second run with the same change id resumes, because every key rotated
//! under it carries the id in its tag.

use chrono::{DateTime, Duration, Utc};

use super::{check_window, Campaign, Candidate, Plan};
use crate::aws::Aws;
use crate::key::{Fact, KeyManager};
use crate::remediation::{self, Outcome, RemediationError};
use crate::rotation::{RotationRecord, RotationRequest, Rotator, CHANGE_ID_TAG};
use crate::runbook::trail::{self, KeyCall};
use crate::runbook::{stamp, RunbookError};

/// Reads every key of this account and Region through the gate's own read, and judges it.
pub async fn candidates(aws: &Aws, campaign: &Campaign, now: DateTime<Utc>) -> Result<Vec<Candidate>, RunbookError> {
    let (keys, aliases) = crate::runbook::inventory::list(aws).await?;
    let mut out = Vec::new();
    for arn in keys {
        let (facts, on_demand) = match remediation::read_key(aws, &arn, &campaign.params).await {
            Ok(Some(read)) => read,
            Ok(None) => continue,
            Err(e) => {
                let mut f = crate::key::KeyFacts::new(arn.rsplit('/').next().unwrap_or(&arn), "", "unknown");
                f.key_arn = arn.clone();
                out.push(Candidate { facts: f, aliases: vec![], need: Err(e.to_string()), on_demand_used: None });
                continue;
            }
        };
        if facts.manager == KeyManager::Aws {
            continue;
        }
        let need = remediation::assess(&facts, &on_demand, &campaign.params, now);
        let on_demand_used = match &on_demand {
            Fact::Known(d) => Some(d.len()),
            _ => None,
        };
        let names = aliases.get(&facts.key_id).cloned().unwrap_or_default();
        out.push(Candidate { facts, aliases: names, need: Ok(need), on_demand_used });
    }
    Ok(out)
}

/// What the run needs besides the plan.
pub struct RunSettings<'a> {
    pub change_id: String,
    /// The rotation request every key gets (wrapping, strategy); key and change id are set per key.
    pub request: RotationRequest,
    pub claim_settle: std::time::Duration,
    /// A line for a person per step (stderr in the CLI).
    pub say: &'a (dyn Fn(&str) + Send + Sync),
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyOutcome {
    pub key_arn: String,
    pub label: String,
    /// rotated, done (earlier run of this change), skipped, refused.
    pub outcome: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RotationRecord>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakReport {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Keys watched (after an alias swap, both the old and the new key).
    pub keys: Vec<String>,
    pub checks: usize,
    pub failures: Vec<KeyCall>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveReport {
    pub name: String,
    pub started: DateTime<Utc>,
    pub keys: Vec<KeyOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stopped {
    pub wave: String,
    pub reason: String,
    pub what_to_do: String,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignReport {
    pub change_id: String,
    pub waves: Vec<WaveReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
}

impl CampaignReport {
    /// Keys a person must look at (refused by the gate).
    pub fn refused(&self) -> usize {
        self.waves.iter().flat_map(|w| &w.keys).filter(|k| k.outcome == "refused").count()
    }

    pub fn table(&self) -> String {
        let mut out = format!("campaign {}\n", self.change_id);
        for w in &self.waves {
            out.push_str(&format!("\nwave {} (from {})\n", w.name, stamp(w.started)));
            for k in &w.keys {
                out.push_str(&format!("  {:<28} {:<8} {}\n", k.label, k.outcome, k.reason));
            }
            if let Some(s) = &w.soak {
                out.push_str(&format!(
                    "  soak {} – {}: {} check(s) of {} key(s), {} failure(s)\n",
                    stamp(s.from),
                    stamp(s.until),
                    s.checks,
                    s.keys.len(),
                    s.failures.len()
                ));
                for f in &s.failures {
                    out.push_str(&format!("    ! {}\n", f.line()));
                }
            }
        }
        match &self.stopped {
            Some(s) => {
                out.push_str(&format!("\nSTOPPED in wave {}: {}\nwhat to do: {}\n", s.wave, s.reason, s.what_to_do))
            }
            None => out.push_str("\nevery wave done, and the watch stayed quiet\n"),
        }
        out
    }
}

fn resume_hint(change_id: &str) -> String {
    format!("run `kms-rotation-guard campaign run --change-id {change_id}` again: it resumes and rotates nothing twice")
}

/// Runs the campaign's waves. The plan must have no problems (missing or unreadable keys).
pub async fn run(
    aws: &Aws,
    rotator: &Rotator<'_>,
    campaign: &Campaign,
    plan: &Plan,
    settings: &RunSettings<'_>,
) -> Result<CampaignReport, RunbookError> {
    if let Some(p) = plan.problems().first() {
        return Err(RunbookError::Refused(format!("the plan cannot run: {} is {} ({})", p.label, p.verdict, p.reason)));
    }
    let say = settings.say;
    let change_id = settings.change_id.as_str();
    let mut report = CampaignReport { change_id: change_id.to_string(), waves: Vec::new(), stopped: None };
    let specs = campaign.explicit.as_ref();
    for (wi, wave) in plan.waves.iter().enumerate() {
        let calendar = specs.and_then(|s| s[wi].change_calendar.as_deref()).or(campaign.change_calendar.as_deref());
        let mut w = WaveReport { name: wave.name.clone(), started: Utc::now(), keys: Vec::new(), soak: None };
        say(&format!("wave {} ({}): {} key(s)", wi + 1, wave.name, wave.keys.len()));
        // Keys this change rotated in an earlier run: the soak starts at their rotation.
        let mut watch: Vec<String> = Vec::new();
        let mut earliest: Option<DateTime<Utc>> = None;
        for k in &wave.keys {
            if k.verdict == "outside" {
                continue;
            }
            if let Err(why) = check_window(aws, calendar, campaign.window, Utc::now()).await? {
                report.stopped = Some(Stopped {
                    wave: wave.name.clone(),
                    reason: format!("{why}: {} not rotated", k.label),
                    what_to_do: format!("wait for the window, then {}", resume_hint(change_id)),
                });
                report.waves.push(w);
                return Ok(report);
            }
            // Read again now: an earlier run of this change may have rotated it since the plan.
            let current = crate::runbook::rollback::read_key(aws, &k.key_arn).await?;
            if let Some(c) =
                current.as_ref().filter(|c| c.tags.get(CHANGE_ID_TAG).map(String::as_str) == Some(change_id))
            {
                let at =
                    c.tags.get(&campaign.params.rotation_tag_key).and_then(|d| crate::verdict::parse_rotation_date(d));
                earliest = earliest.min(at).or(at);
                watch.push(c.arn.clone());
                if let Some(s) = c.tags.get(crate::rotation::SUCCESSOR_TAG) {
                    watch.push(s.clone());
                }
                say(&format!("  {}: already rotated under {change_id}", k.label));
                w.keys.push(KeyOutcome {
                    key_arn: k.key_arn.clone(),
                    label: k.label.clone(),
                    outcome: "done".into(),
                    reason: format!("rotated under {change_id} by an earlier run"),
                    record: None,
                });
                continue;
            }
            let request = RotationRequest {
                key: k.key_arn.clone(),
                change_id: Some(change_id.to_string()),
                date_tag: campaign.params.rotation_tag_key.clone(),
                strategy: campaign.strategy,
                reevaluate: vec![],
                ..settings.request.clone()
            };
            let claim_id = format!("campaign-{}", remediation::new_claim_id());
            let outcome = remediation::rotate_if_needed(
                aws,
                rotator,
                &request,
                &campaign.params,
                &claim_id,
                settings.claim_settle,
            )
            .await;
            match outcome {
                Ok(Outcome::Rotated { reason, record }) => {
                    say(&format!("  {}: rotated ({reason})", k.label));
                    watch.push(record.key_arn.clone());
                    if record.current_key_arn != record.key_arn {
                        watch.push(record.current_key_arn.clone());
                    }
                    w.keys.push(KeyOutcome {
                        key_arn: k.key_arn.clone(),
                        label: k.label.clone(),
                        outcome: "rotated".into(),
                        reason,
                        record: Some(record),
                    });
                }
                Ok(Outcome::Skipped(reason)) | Ok(Outcome::Planned { reason, .. }) => {
                    say(&format!("  {}: skipped ({reason})", k.label));
                    w.keys.push(KeyOutcome {
                        key_arn: k.key_arn.clone(),
                        label: k.label.clone(),
                        outcome: "skipped".into(),
                        reason,
                        record: None,
                    });
                }
                Err(RemediationError::Refused(reason))
                | Err(RemediationError::Rotation(crate::rotation::RotationError::Refused(reason))) => {
                    // The gate refuses what a person must decide (few rotations left,
                    // multi-Region): reported, and the campaign goes on with the others.
                    say(&format!("  {}: refused ({reason})", k.label));
                    w.keys.push(KeyOutcome {
                        key_arn: k.key_arn.clone(),
                        label: k.label.clone(),
                        outcome: "refused".into(),
                        reason,
                        record: None,
                    });
                }
                Err(e) => {
                    report.stopped = Some(Stopped {
                        wave: wave.name.clone(),
                        reason: format!("the rotation of {} failed: {e}", k.label),
                        what_to_do: format!(
                            "fix the cause; a rotation stopped part-way is completed, never repeated, by the next run: {}",
                            resume_hint(change_id)
                        ),
                    });
                    report.waves.push(w);
                    return Ok(report);
                }
            }
        }
        let rotated_now = w.keys.iter().any(|k| k.outcome == "rotated");
        if rotated_now && !campaign.reevaluate.is_empty() {
            aws.config_service()
                .start_config_rules_evaluation()
                .set_config_rule_names(Some(campaign.reevaluate.clone()))
                .send()
                .await
                .map_err(crate::runbook::aws_err("config:StartConfigRulesEvaluation"))?;
            say(&format!("  asked Config to re-evaluate {}", campaign.reevaluate.join(", ")));
        }
        if !watch.is_empty() {
            // The soak runs from the wave's first rotation (a resumed run's earlier one counts).
            let since = earliest.map(|e| e.min(w.started)).unwrap_or(w.started);
            let soak = soak(aws, &watch, since, campaign, say).await?;
            let failed = !soak.failures.is_empty();
            w.soak = Some(soak);
            if failed {
                let first = &w.soak.as_ref().expect("set above").failures[0];
                report.stopped = Some(Stopped {
                    wave: wave.name.clone(),
                    reason: format!("a workload failed to use a rotated key: {}", first.line()),
                    what_to_do: format!(
                        "after an alias swap, `kms-rotation-guard rollback --key <alias>` points the alias back; after an \
                         in-place rotation every older ciphertext still decrypts, so look at the caller's grants and key \
                         policy; when fixed, {}",
                        resume_hint(change_id)
                    ),
                });
                report.waves.push(w);
                return Ok(report);
            }
        }
        report.waves.push(w);
    }
    Ok(report)
}

/// Watches `keys` from `since` until the soak time has passed since then, polling CloudTrail;
/// returns at the first failure. A soak that has already passed (a resumed run) is one check.
async fn soak(
    aws: &Aws,
    keys: &[String],
    since: DateTime<Utc>,
    campaign: &Campaign,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<SoakReport, RunbookError> {
    // CloudTrail is read from a minute before the soak began, so a failure in the moment of the
    // rotation counts whatever the clocks; the soak itself lasts its full time from `since`.
    let lookback = since - Duration::minutes(1);
    let until = since + campaign.soak;
    let mut report = SoakReport { from: since, until, keys: keys.to_vec(), checks: 0, failures: Vec::new() };
    say(&format!("  soaking until {} while watching {} key(s)", stamp(until), keys.len()));
    loop {
        let now = Utc::now();
        report.checks += 1;
        for k in keys {
            let found = trail::failures(aws, k, lookback, now).await?;
            if !found.is_empty() {
                report.failures = found;
                return Ok(report);
            }
        }
        if now >= until {
            return Ok(report);
        }
        let left = (until - now).to_std().unwrap_or_default();
        tokio::time::sleep(left.min(campaign.poll)).await;
    }
}
