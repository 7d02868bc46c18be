//! `campaign plan|run`: rotate the keys that need it, one environment at a time (dev, int,
//! prod by default), inside a maintenance window, soaking and watching after each wave.
//!
//! The plan is pure ([`plan`]): candidates (each key's facts and the gate's own judgement)
//! and the campaign's settings give waves, each key with its verdict, its rotations left and
//! what would happen to it. [`run`] takes the waves one after another (see `run.rs`); it
//! keeps no state of its own: a key rotated under a change id carries that id in its
//! `KmsRotationGuardChangeId` tag, which is how a second run with the same id resumes
//! without rotating anything twice.

mod run;
mod window;

pub use run::{candidates, run, CampaignReport, KeyOutcome, RunSettings, SoakReport, Stopped, WaveReport};
pub use window::{check_window, in_window};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::{RunbookError, ENVIRONMENT_TAG, GUARD_TAG};
use crate::key::{Fact, KeyFacts};
use crate::params::RuleParams;
use crate::remediation::Need;
use crate::rotation::{Strategy, CHANGE_ID_TAG, ON_DEMAND_QUOTA};

/// The default order of the waves: the values of the `Environment` tag.
pub const DEFAULT_ORDER: [&str; 3] = ["dev", "int", "prod"];

/// The plan file (TOML). Every field is optional; flags on the command line win.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Environment tag values, one wave each, in this order.
    pub order: Option<Vec<String>>,
    /// Explicit waves instead of `order`: `[[waves]] name = "canary" keys = ["alias/…"]`.
    pub waves: Option<Vec<WaveSpec>>,
    /// SSM Change Calendar (name or ARN) that must be OPEN before each rotation.
    pub change_calendar: Option<String>,
    /// A maintenance window (RFC 3339) rotations must start inside.
    pub window: Option<WindowSpec>,
    pub soak_minutes: Option<u64>,
    /// How often the soak asks CloudTrail (seconds).
    pub poll_seconds: Option<u64>,
    /// in-place (default) or alias-swap.
    pub strategy: Option<String>,
    /// Config rules to re-evaluate after each wave.
    pub reevaluate: Option<Vec<String>>,
    /// The rule parameters the gate judges by (a JSON object, as Config passes them).
    pub rule_parameters: Option<String>,
    /// Only keys tagged kms-rotation-guard=<this> take part; "" = every key.
    pub guard_tag_value: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    pub name: String,
    /// Key references: aliases, key ids or ARNs.
    pub keys: Vec<String>,
    /// A calendar for this wave only.
    pub change_calendar: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub start: String,
    pub end: String,
}

/// The campaign's settings, resolved and checked.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub order: Vec<String>,
    pub explicit: Option<Vec<WaveSpec>>,
    pub change_calendar: Option<String>,
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub soak: Duration,
    pub poll: std::time::Duration,
    pub strategy: Strategy,
    pub reevaluate: Vec<String>,
    pub params: RuleParams,
    pub guard: Option<String>,
}

impl PlanFile {
    pub fn parse(text: &str) -> Result<PlanFile, RunbookError> {
        toml::from_str(text).map_err(|e| RunbookError::Input(format!("the plan file: {e}")))
    }

    /// Resolves the file into a campaign; `soak_minutes` overrides the file's.
    pub fn resolve(self, soak_minutes: Option<u64>) -> Result<Campaign, RunbookError> {
        let bad = |m: String| RunbookError::Input(m);
        if self.order.is_some() && self.waves.is_some() {
            return Err(bad("the plan gives both `order` and `waves`: give one".into()));
        }
        let order: Vec<String> = self
            .order
            .unwrap_or_else(|| DEFAULT_ORDER.iter().map(|s| s.to_string()).collect())
            .into_iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .collect();
        if order.is_empty() || order.iter().any(String::is_empty) {
            return Err(bad("`order` needs at least one Environment value, none empty".into()));
        }
        if let Some(w) = &self.waves {
            if w.is_empty() || w.iter().any(|w| w.keys.is_empty() || w.name.trim().is_empty()) {
                return Err(bad("every wave needs a name and at least one key".into()));
            }
        }
        let window = match self.window {
            None => None,
            Some(w) => {
                let t = |s: &str| {
                    crate::event::parse_time(s).ok_or_else(|| bad(format!("window time {s:?} is not RFC 3339")))
                };
                let (start, end) = (t(&w.start)?, t(&w.end)?);
                if end <= start {
                    return Err(bad("the window ends before it starts".into()));
                }
                Some((start, end))
            }
        };
        let soak = soak_minutes.or(self.soak_minutes).unwrap_or(30);
        if soak > 24 * 60 {
            return Err(bad(format!("soak of {soak} minutes: at most a day")));
        }
        Ok(Campaign {
            order,
            explicit: self.waves,
            change_calendar: self.change_calendar.filter(|c| !c.trim().is_empty()),
            window,
            soak: Duration::minutes(soak as i64),
            poll: std::time::Duration::from_secs(self.poll_seconds.unwrap_or(60).clamp(1, 3600)),
            strategy: self.strategy.as_deref().unwrap_or("in-place").parse().map_err(|e| bad(format!("{e}")))?,
            reevaluate: self.reevaluate.unwrap_or_default(),
            params: RuleParams::parse(self.rule_parameters.as_deref())?,
            guard: match self.guard_tag_value {
                None => Some("enabled".into()),
                Some(v) if v.is_empty() => None,
                Some(v) => Some(v),
            },
        })
    }
}

/// Checks a change id: it becomes a tag value and an audit field.
pub fn check_change_id(id: &str) -> Result<(), RunbookError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RunbookError::Input(format!(
            "change id {:?}: 1 to 64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit (e.g. CHG-1234)",
            crate::key::reference::truncate_chars(id, 70)
        )))
    }
}

/// One key as the plan sees it: the gate's facts and judgement.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub facts: KeyFacts,
    pub aliases: Vec<String>,
    /// The gate's answer (`remediation::assess`), or why the gate could not read the key.
    pub need: Result<Need, String>,
    /// ON_DEMAND rotations so far; `None` where KMS cannot list them.
    pub on_demand_used: Option<usize>,
}

impl Candidate {
    fn tag(&self, k: &str) -> Option<String> {
        match &self.facts.tags {
            Fact::Known(t) => t.get(k).cloned(),
            _ => None,
        }
    }
    pub fn label(&self) -> String {
        self.aliases.first().cloned().unwrap_or_else(|| self.facts.key_id.clone())
    }
    pub fn environment(&self) -> Option<String> {
        self.tag(ENVIRONMENT_TAG)
    }
    pub fn change_id(&self) -> Option<String> {
        self.tag(CHANGE_ID_TAG)
    }
    fn matches(&self, reference: &str) -> bool {
        let r = reference.trim();
        r == self.facts.key_arn
            || r == self.facts.key_id
            || self.aliases.iter().any(|a| a == r || r.ends_with(&format!(":{a}")))
    }
}

/// What the plan says about one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedKey {
    pub key_arn: String,
    pub label: String,
    pub environment: Option<String>,
    /// rotate, resume, done, skip, refuse, unreadable, missing, outside.
    pub verdict: String,
    pub reason: String,
    pub rotations_left: Option<u32>,
    /// What `run` would do, in words.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWave {
    pub name: String,
    pub keys: Vec<PlannedKey>,
}

/// The campaign's plan: waves in order, and the keys outside them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub change_id: Option<String>,
    pub strategy: String,
    pub soak_minutes: i64,
    pub change_calendar: Option<String>,
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub waves: Vec<PlannedWave>,
    pub outside: Vec<PlannedKey>,
}

impl Plan {
    /// Rotations the campaign would start.
    pub fn rotations(&self) -> usize {
        self.waves.iter().flat_map(|w| &w.keys).filter(|k| k.verdict == "rotate").count()
    }
    /// Keys the plan cannot place or read: run refuses to start.
    pub fn problems(&self) -> Vec<&PlannedKey> {
        self.waves
            .iter()
            .flat_map(|w| &w.keys)
            .filter(|k| matches!(k.verdict.as_str(), "missing" | "unreadable"))
            .collect()
    }
}

fn planned(c: &Candidate, campaign: &Campaign, change_id: Option<&str>) -> PlannedKey {
    let left = c.on_demand_used.map(|n| ON_DEMAND_QUOTA.saturating_sub(n as u32));
    let (verdict, reason, action) = match (&c.need, change_id, c.change_id()) {
        (_, Some(id), Some(done)) if id == done => (
            "done",
            format!("rotated under {id} already"),
            "nothing: already rotated in this change (a resumed run rotates nothing twice)".to_string(),
        ),
        (Ok(Need::Rotate(why)), _, _) => (
            "rotate",
            why.clone(),
            match (campaign.strategy, left) {
                (Strategy::InPlace, Some(n)) => {
                    format!(
                        "rotate in place: new material from the HSM; {} of {ON_DEMAND_QUOTA} rotations left after",
                        n.saturating_sub(1)
                    )
                }
                (Strategy::InPlace, None) => "rotate in place: new material from the HSM".into(),
                (Strategy::AliasSwap, _) => "alias swap: a new key with new material; the alias moves to it".into(),
            },
        ),
        (Ok(Need::Resume(why)), _, _) => ("resume", why.clone(), "finish the rotation a stopped run began".into()),
        (Ok(Need::Skip(why)), _, _) => ("skip", why.clone(), "nothing: the gate skips it".into()),
        (Ok(Need::Refuse(why)), _, _) => {
            ("refuse", why.clone(), "nothing: the gate refuses it; a person must act".into())
        }
        (Ok(Need::Denied(d)), _, _) => {
            ("unreadable", format!("{} denied: {}", d.action, d.hint), "cannot judge it: grant the read".into())
        }
        (Err(e), _, _) => ("unreadable", e.clone(), "cannot judge it".into()),
    };
    PlannedKey {
        key_arn: c.facts.key_arn.clone(),
        label: c.label(),
        environment: c.environment(),
        verdict: verdict.into(),
        reason,
        rotations_left: left,
        action,
    }
}

/// Pure: the waves of the campaign.
pub fn plan(candidates: &[Candidate], campaign: &Campaign, change_id: Option<&str>) -> Plan {
    let mut waves = Vec::new();
    let mut placed = vec![false; candidates.len()];
    let guarded = |c: &Candidate| match &campaign.guard {
        None => true,
        Some(v) => c.tag(GUARD_TAG).as_deref() == Some(v.as_str()),
    };
    match &campaign.explicit {
        Some(specs) => {
            for spec in specs {
                let mut keys = Vec::new();
                for reference in &spec.keys {
                    match candidates.iter().position(|c| c.matches(reference)) {
                        Some(i) if !guarded(&candidates[i]) => {
                            placed[i] = true;
                            keys.push(PlannedKey {
                                verdict: "outside".into(),
                                reason: format!("not tagged {GUARD_TAG}={}", campaign.guard.as_deref().unwrap_or("")),
                                action: "nothing: the campaign touches guarded keys only".into(),
                                ..planned(&candidates[i], campaign, change_id)
                            });
                        }
                        Some(i) => {
                            placed[i] = true;
                            keys.push(planned(&candidates[i], campaign, change_id));
                        }
                        None => keys.push(PlannedKey {
                            key_arn: reference.clone(),
                            label: reference.clone(),
                            environment: None,
                            verdict: "missing".into(),
                            reason: "no such key in this account and Region".into(),
                            rotations_left: None,
                            action: "fix the plan file".into(),
                        }),
                    }
                }
                waves.push(PlannedWave { name: spec.name.clone(), keys });
            }
        }
        None => {
            for env in &campaign.order {
                let mut keys = Vec::new();
                for (i, c) in candidates.iter().enumerate() {
                    if c.environment().is_some_and(|e| e.eq_ignore_ascii_case(env)) && guarded(c) {
                        placed[i] = true;
                        keys.push(planned(c, campaign, change_id));
                    }
                }
                keys.sort_by(|a, b| a.label.cmp(&b.label));
                waves.push(PlannedWave { name: env.clone(), keys });
            }
        }
    }
    let mut outside: Vec<PlannedKey> = candidates
        .iter()
        .zip(&placed)
        .filter(|(_, p)| !**p)
        .map(|(c, _)| {
            let reason = if !guarded(c) {
                format!("not tagged {GUARD_TAG}={}", campaign.guard.as_deref().unwrap_or(""))
            } else {
                match c.environment() {
                    None => format!("no {ENVIRONMENT_TAG} tag"),
                    Some(e) => format!("{ENVIRONMENT_TAG}={e} is in no wave"),
                }
            };
            PlannedKey {
                verdict: "outside".into(),
                reason,
                action: "nothing: not in the campaign".into(),
                ..planned(c, campaign, change_id)
            }
        })
        .collect();
    outside.sort_by(|a, b| a.label.cmp(&b.label));
    Plan {
        change_id: change_id.map(str::to_string),
        strategy: campaign.strategy.to_string(),
        soak_minutes: campaign.soak.num_minutes(),
        change_calendar: campaign.change_calendar.clone(),
        window: campaign.window,
        waves,
        outside,
    }
}

/// The plan as a table: one block per wave.
pub fn plan_table(p: &Plan) -> String {
    let mut out = format!(
        "campaign: {} {}, soak {} min{}{}\n",
        p.change_id.as_deref().unwrap_or("(no change id)"),
        p.strategy,
        p.soak_minutes,
        p.change_calendar.as_deref().map(|c| format!(", change calendar {c}")).unwrap_or_default(),
        p.window.map(|(s, e)| format!(", window {} – {}", super::stamp(s), super::stamp(e))).unwrap_or_default()
    );
    let row = |k: &PlannedKey| {
        format!(
            "  {:<28} {:<10} {:>4}  {}\n      {}\n",
            k.label,
            k.verdict,
            k.rotations_left.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            k.action,
            k.reason
        )
    };
    for (i, w) in p.waves.iter().enumerate() {
        out.push_str(&format!(
            "\nwave {} — {} ({} key(s))\n  {:<28} {:<10} {:>4}  WHAT WOULD HAPPEN\n",
            i + 1,
            w.name,
            w.keys.len(),
            "KEY",
            "VERDICT",
            "LEFT"
        ));
        for k in &w.keys {
            out.push_str(&row(k));
        }
    }
    if !p.outside.is_empty() {
        out.push_str(&format!("\nnot in the campaign ({} key(s))\n", p.outside.len()));
        for k in &p.outside {
            out.push_str(&row(k));
        }
    }
    out.push_str(&format!("\n{} rotation(s) would start; nothing was changed\n", p.rotations()));
    out
}

#[cfg(test)]
mod tests;
