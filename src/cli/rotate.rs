//! `rotate`: one key's imported material, rotated through the HSM. Without `--force` it goes
//! through the same gate as the remediation Lambda, so an operator cannot spend a rotation
//! the key does not need by accident; it never deletes anything.

use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::remediation::{self, Outcome};
use kms_rotation_guard::rotation::{RotationPlan, RotationRecord, RotationRequest, Rotator};

use super::exit::ExitStatus;
use super::format::fields;
use super::hsm_args::{open_source, HsmArgs};
use super::parse_now;

/// Rotate the imported key material of one KMS key (BYOK): generate and wrap it in an
/// HSM, import, verify, tag. Resumes an interrupted rotation. Never deletes anything.
#[derive(clap::Args)]
#[command(after_help = "The PKCS#11 PIN is read from KRG_PKCS11_PIN or, with --pin-stdin, from standard input; \
    never from a flag.\n\nWithout --force the key is rotated only when it needs it, as in the remediation Lambda: \
    its material is at least maxKeyAgeDays - expiryWarningDays old (or expiring), it had no on-demand rotation \
    in the last 24 hours, and no other rotation holds it.\n\nExamples:\n  \
    KRG_PKCS11_PIN=... kms-rotation-guard rotate --key alias/prod-s3 --hsm pkcs11 \\\n      \
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok --dry-run\n  \
    kms-rotation-guard rotate --key alias/prod-rds --strategy alias-swap --hsm pkcs11 ... --pin-stdin < pin.txt\n  \
    kms-rotation-guard rotate --key alias/dev-s3 --hsm software   # development only")]
pub struct RotateArgs {
    /// Alias, alias ARN, key id or key ARN.
    #[arg(long)]
    pub key: String,
    /// in-place (import new material + RotateKeyOnDemand) or alias-swap (new key, move the alias).
    #[arg(long, default_value = "in-place", value_parser = ["in-place", "alias-swap"])]
    pub strategy: String,
    /// Pin a wrapping algorithm (RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256,
    /// RSA_AES_KEY_WRAP_SHA_1); default: the strongest the HSM can do.
    #[arg(long)]
    pub wrapping_algorithm: Option<String>,
    /// RSA_2048, RSA_3072 or RSA_4096.
    #[arg(long, default_value = "RSA_4096")]
    pub wrapping_key_spec: String,
    /// Where key material is generated and kept.
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Config rules to re-evaluate afterwards (StartConfigRulesEvaluation).
    #[arg(long, num_args = 1..)]
    pub reevaluate: Vec<String>,
    /// Let the new material expire at this time (RFC 3339); default: never. Refused unless
    /// the HSM keeps the material (restore it with `reimport`).
    #[arg(long)]
    pub valid_to: Option<String>,
    /// The rule's parameters the gate judges by, as Config passes them (a JSON object),
    /// e.g. '{"maxKeyAgeDays":"90","expiryWarningDays":"10"}'; default: the rule's defaults.
    #[arg(long)]
    pub rule_parameters: Option<String>,
    /// Rotate even when the key does not need it (spends one of its 25 on-demand
    /// rotations). For an operator only: the Lambda never forces. It still takes the key's
    /// rotation lock: a key another rotation holds is not rotated (exit status 1).
    #[arg(long)]
    pub force: bool,
    /// json (every outcome, the plan included, as one JSON document) or table (for people).
    /// Default: the outcome as one JSON line and a --dry-run plan as text, as before.
    #[arg(long, value_parser = ["table", "json"])]
    pub format: Option<String>,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
}

/// How the outcome is printed: `Default` keeps what scripts already parse (the outcome as
/// one JSON line) and the plan as text for the person running --dry-run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    Default,
    Json,
    Table,
}

impl Shown {
    fn plan(self, plan: &RotationPlan, reason: Option<&str>) {
        match self {
            Shown::Json => println!("{}", plan_json(plan, reason)),
            Shown::Default | Shown::Table => println!("{plan}"),
        }
    }

    fn record(self, record: &RotationRecord) -> anyhow::Result<()> {
        match self {
            Shown::Table => print!("{}", fields(&serde_json::to_value(record)?)),
            Shown::Default | Shown::Json => println!("{}", serde_json::to_string(record)?),
        }
        Ok(())
    }

    fn skipped(self, reason: &str) {
        match self {
            Shown::Table => println!("not rotated: {reason}"),
            Shown::Default | Shown::Json => {
                println!("{}", serde_json::json!({ "status": "skipped", "reason": reason }))
            }
        }
    }
}

/// The plan as JSON, for `--format json --dry-run`.
fn plan_json(plan: &RotationPlan, reason: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "status": "planned",
        "reason": reason,
        "keyArn": plan.key_arn,
        "keyId": plan.key_id,
        "alias": plan.alias,
        "state": plan.state,
        "strategy": plan.strategy.to_string(),
        "wrappingAlgorithm": plan.algorithm.as_str(),
        "wrappingKeySpec": plan.wrapping_key_spec.as_str(),
        "source": plan.source,
        "keepsMaterial": plan.keeps_material,
        "replicas": plan.replicas.iter().map(|r| r.arn.as_str()).collect::<Vec<_>>(),
        "progress": format!("{:?}", plan.progress),
        "quotaLeft": plan.quota_left,
    })
}

pub async fn run(args: RotateArgs) -> anyhow::Result<ExitStatus> {
    let RotateArgs {
        key,
        strategy,
        wrapping_algorithm,
        wrapping_key_spec,
        hsm,
        dry_run,
        reevaluate,
        valid_to,
        rule_parameters,
        force,
        format,
        json,
    } = args;
    let shown = match (json, format.as_deref()) {
        (true, _) | (_, Some("json")) => Shown::Json,
        (_, Some("table")) => Shown::Table,
        _ => Shown::Default,
    };
    // Checked before the HSM is opened or a PIN read: a typo must not cost a login.
    let params = RuleParams::parse(rule_parameters.as_deref())?;
    let source = open_source(&hsm)?;
    let request = RotationRequest {
        date_tag: params.rotation_tag_key.clone(),
        strategy: strategy.parse()?,
        wrapping_algorithm: wrapping_algorithm.map(|a| a.parse()).transpose()?,
        wrapping_key_spec: wrapping_key_spec.parse()?,
        valid_to: valid_to.map(|v| parse_now(Some(&v))).transpose()?,
        dry_run,
        reevaluate,
        ..RotationRequest::new(key)
    };
    let aws = Aws::from_env().await;
    let rotator = Rotator::new(&aws, source.as_ref()).on_step(|step, text| eprintln!("==> {step:?}: {text}"));
    let claim_id = format!("cli-{}", remediation::new_claim_id());
    if force {
        return forced(&aws, &rotator, &request, &claim_id, shown).await;
    }
    let outcome =
        remediation::rotate_if_needed(&aws, &rotator, &request, &params, &claim_id, remediation::DEFAULT_CLAIM_SETTLE)
            .await?;
    match outcome {
        Outcome::Skipped(reason) => {
            eprintln!("==> not rotated: {reason}");
            shown.skipped(&reason);
        }
        Outcome::Planned { reason, plan } => {
            eprintln!("==> due: {reason}");
            shown.plan(&plan, Some(&reason));
        }
        Outcome::Rotated { record, .. } => shown.record(&record)?,
    }
    Ok(ExitStatus::Ok)
}

/// `--force`: no "does it need rotating?" gate, but the same lock as every rotation (the claim
/// tag), so an operator's run never overlaps the Lambda's or another operator's.
async fn forced(
    aws: &Aws,
    rotator: &Rotator<'_>,
    request: &RotationRequest,
    claim_id: &str,
    shown: Shown,
) -> anyhow::Result<ExitStatus> {
    eprintln!("==> --force: rotating without the \"does it need rotating?\" gate (the lock still applies)");
    if request.dry_run {
        shown.plan(&rotator.plan(request).await?, None);
        return Ok(ExitStatus::Ok);
    }
    let plan = rotator.plan(request).await?;
    let key_arn = plan.key_arn.clone();
    let settle = remediation::DEFAULT_CLAIM_SETTLE;
    if let remediation::Claim::Taken(why) =
        remediation::claim(aws, &key_arn, claim_id, settle, chrono::Utc::now()).await?
    {
        eprintln!("==> not rotated: {why}");
        shown.skipped(&why);
        return Ok(ExitStatus::Findings);
    }
    let result = rotator.rotate(request).await;
    let mut holders = vec![key_arn.clone()];
    if let Ok((_, Some(r))) = &result {
        if r.current_key_arn != key_arn {
            // alias-swap copies the old key's tags, the claim included.
            holders.push(r.current_key_arn.clone());
        }
    }
    for k in holders {
        if let Err(e) = remediation::release(aws, &k, claim_id).await {
            // The lease ends it in 15 minutes; the rotation's own outcome matters more.
            eprintln!("==> warning: could not remove the rotation claim from {k}: {e}");
        }
    }
    let (plan, record) = result?;
    match record {
        None => shown.plan(&plan, None),
        Some(r) => shown.record(&r)?,
    }
    Ok(ExitStatus::Ok)
}
