//! The operator CLI: the same library the Lambda handlers run.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rule::Rule;
use kms_rotation_guard::{event, handler};

#[derive(Parser)]
#[command(name = "kms-rotation-guard", version, about = "Prove KMS key material is rotated in time; rotate it safely")]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a rule handler on a Config event file, exactly as Lambda would, and print one
    /// JSON object per evaluation.
    #[command(after_help = "Examples:\n  kms-rotation-guard evaluate --event events/s3-change.json\n  \
        kms-rotation-guard evaluate --event events/periodic-rds.json --now 2026-11-23T00:00:00Z")]
    Evaluate {
        /// The Lambda payload (a Config rule event).
        #[arg(long)]
        event: PathBuf,
        /// The rule to run (rds, dynamodb, s3); inferred from the event when omitted.
        #[arg(long)]
        rule: Option<String>,
        /// Fix the clock (RFC 3339) for reproducible runs.
        #[arg(long)]
        now: Option<String>,
    },
    /// The auditor's report: judge every resource of this account and region now, without
    /// reporting to Config. Exit status 0 when all are compliant, 1 when any is not, 2 on error.
    #[command(after_help = "Examples:\n  kms-rotation-guard scan --format table\n  \
        kms-rotation-guard scan --resource-types AWS::S3::Bucket --key-reader-role-name kms-rotation-guard-key-reader \\\n      \
        --format csv --output audit.csv\n  \
        kms-rotation-guard scan --format html --output report.html   # one self-contained page for the auditor\n  \
        KRG_PKCS11_PIN=... kms-rotation-guard scan --format html --output report.html --hsm pkcs11 \\\n      \
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok   # and whether the HSM holds each key's material\n\n\
        With --hsm, each imported (EXTERNAL) key of this account is asked once whether the HSM holds its current \
        material (hsmHoldsMaterial; \"held\" / \"NOT HELD\" in the HTML). Without it, or where that cannot be read, \
        it is unknown.")]
    // `--hsm` is required by `materials` and `reimport`, optional here (clap#5092).
    #[command(mut_arg("hsm", |a| a.required(false)))]
    Scan {
        /// Resource types to scan (default: all four).
        #[arg(long, num_args = 1.., value_parser = ["AWS::RDS::DBInstance", "AWS::RDS::DBCluster", "AWS::DynamoDB::Table", "AWS::S3::Bucket"])]
        resource_types: Vec<String>,
        /// Role assumed in each key account to read keys of other accounts.
        #[arg(long)]
        key_reader_role_name: Option<String>,
        #[arg(long, default_value_t = 365)]
        max_key_age_days: i64,
        /// Accept AWS-managed keys.
        #[arg(long)]
        allow_aws_managed_keys: bool,
        /// html: one self-contained page with the key-age picture and the JSON payload's SHA-256.
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "html"])]
        format: String,
        /// Write the report here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Judge as of this time (RFC 3339).
        #[arg(long)]
        now: Option<String>,
        /// The HSM that keeps the key material: the report then says whether it holds each
        /// key's current material.
        #[command(flatten)]
        hsm: Option<HsmArgs>,
    },
    /// The whole product on this machine: local emulators, a seeded estate, evaluation,
    /// rotation through SoftHSM, re-evaluation. Starts and stops everything it needs.
    #[command(after_help = "Run it through scripts/demo, which installs the emulators first.")]
    Demo {
        /// Print one JSON document (before, rotations, after) instead of tables.
        #[arg(long)]
        json: bool,
        /// Where scripts/setup installed the emulators.
        #[arg(long, env = "KRG_TOOLS", default_value = ".tools")]
        tools: PathBuf,
        /// Where the HTML reports before and after rotation are written.
        #[arg(long, default_value = "target/demo")]
        report_dir: PathBuf,
    },
    /// Rotate the imported key material of one KMS key (BYOK): generate and wrap it in an
    /// HSM, import, verify, tag. Resumes an interrupted rotation. Never deletes anything.
    #[command(after_help = "The PKCS#11 PIN is read from KRG_PKCS11_PIN or, with --pin-stdin, from standard input; \
        never from a flag.\n\nWithout --force the key is rotated only when it needs it, as in the remediation Lambda: \
        its material is at least maxKeyAgeDays - expiryWarningDays old (or expiring), it had no on-demand rotation \
        in the last 24 hours, and no other rotation holds it.\n\nExamples:\n  \
        KRG_PKCS11_PIN=... kms-rotation-guard rotate --key alias/prod-s3 --hsm pkcs11 \\\n      \
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok --dry-run\n  \
        kms-rotation-guard rotate --key alias/prod-rds --strategy alias-swap --hsm pkcs11 ... --pin-stdin < pin.txt\n  \
        kms-rotation-guard rotate --key alias/dev-s3 --hsm software   # development only")]
    Rotate {
        /// Alias, alias ARN, key id or key ARN.
        #[arg(long)]
        key: String,
        /// in-place (import new material + RotateKeyOnDemand) or alias-swap (new key, move the alias).
        #[arg(long, default_value = "in-place", value_parser = ["in-place", "alias-swap"])]
        strategy: String,
        /// Pin a wrapping algorithm (RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256,
        /// RSA_AES_KEY_WRAP_SHA_1); default: the strongest the HSM can do.
        #[arg(long)]
        wrapping_algorithm: Option<String>,
        /// RSA_2048, RSA_3072 or RSA_4096.
        #[arg(long, default_value = "RSA_4096")]
        wrapping_key_spec: String,
        /// Where key material is generated and kept.
        #[command(flatten)]
        hsm: HsmArgs,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Config rules to re-evaluate afterwards (StartConfigRulesEvaluation).
        #[arg(long, num_args = 1..)]
        reevaluate: Vec<String>,
        /// Let the new material expire at this time (RFC 3339); default: never. Refused unless
        /// the HSM keeps the material (restore it with `reimport`).
        #[arg(long)]
        valid_to: Option<String>,
        /// The rule's parameters the gate judges by, as Config passes them (a JSON object),
        /// e.g. '{"maxKeyAgeDays":"90","expiryWarningDays":"10"}'; default: the rule's defaults.
        #[arg(long)]
        rule_parameters: Option<String>,
        /// Rotate even when the key does not need it (spends one of its 25 on-demand
        /// rotations). For an operator only: the Lambda never forces.
        #[arg(long)]
        force: bool,
    },
    #[command(flatten)]
    Custody(CustodyCommand),
}

/// Where key material is generated and kept (`rotate`, `materials`, `reimport`, and optionally `scan`).
#[derive(clap::Args)]
#[group(requires = "hsm")]
struct HsmArgs {
    /// pkcs11 (an HSM) or software (development only: it keeps nothing).
    #[arg(long, value_parser = ["pkcs11", "software"])]
    hsm: String,
    /// The HSM's PKCS#11 library.
    #[arg(long, required_if_eq("hsm", "pkcs11"))]
    pkcs11_module: Option<PathBuf>,
    /// The token's label (slot ids are not stable).
    #[arg(long, required_if_eq("hsm", "pkcs11"))]
    token_label: Option<String>,
    /// Read the PIN from the first line of standard input instead of KRG_PKCS11_PIN.
    #[arg(long)]
    pin_stdin: bool,
}

/// Custody commands: what KMS lists against what the HSM holds; putting kept material back.
#[derive(Subcommand)]
enum CustodyCommand {
    /// Every key material KMS lists for a key (ListKeyRotations, ALL_KEY_MATERIAL): its
    /// state, dates, and whether the HSM holds it. "NOT HELD" material cannot be imported again.
    #[command(
        after_help = "Example:\n  KRG_PKCS11_PIN=... kms-rotation-guard materials --key alias/prod-s3 --hsm pkcs11 \\\n      \
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok"
    )]
    Materials {
        /// Alias, alias ARN, key id or key ARN.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        hsm: HsmArgs,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Import kept material again (after expiry or DeleteImportedKeyMaterial): GetParametersForImport,
    /// wrap inside the HSM, ImportKeyMaterial with EXISTING_KEY_MATERIAL and its KeyMaterialId.
    #[command(after_help = "Without --key-material-id, every material KMS lists as PENDING_IMPORT.\n\nExample:\n  \
        KRG_PKCS11_PIN=... kms-rotation-guard reimport --key alias/prod-s3 --hsm pkcs11 \\\n      \
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label byok --dry-run")]
    Reimport {
        /// Alias, alias ARN, key id or key ARN.
        #[arg(long)]
        key: String,
        /// The material to import again; default: every one KMS says needs it.
        #[arg(long)]
        key_material_id: Option<String>,
        #[command(flatten)]
        hsm: HsmArgs,
        /// Pin a wrapping algorithm; default: the strongest the HSM can do.
        #[arg(long)]
        wrapping_algorithm: Option<String>,
        /// RSA_2048, RSA_3072 or RSA_4096.
        #[arg(long, default_value = "RSA_4096")]
        wrapping_key_spec: String,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose, matches!(cli.command, Command::Demo { .. }));
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logs(verbose: u8, demo: bool) {
    kms_rotation_guard::logging::init_cli(match verbose {
        // The demo names the emulators' gaps itself, once, in plain words; the rotation's
        // per-key warning about the same gap would repeat it between the tables.
        0 if demo => "warn,kms_rotation_guard::rotation=error",
        0 => "warn",
        1 => "debug",
        _ => "trace",
    });
}

fn parse_now(now: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    match now {
        None => Ok(Utc::now()),
        Some(s) => event::parse_time(s)
            .ok_or_else(|| anyhow!("--now {s:?} is not an RFC 3339 time (e.g. 2026-11-23T00:00:00Z)")),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Evaluate { event: path, rule, now } => {
            let now = parse_now(now.as_deref())?;
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let inv = event::parse_bytes(&bytes)?;
            let rule = match rule {
                Some(r) => Rule::find(&r).ok_or_else(|| anyhow!("unknown rule {r:?}: use rds, dynamodb or s3"))?,
                None => infer_rule(&inv)?,
            };
            let payload: serde_json::Value = serde_json::from_slice(&bytes)?;
            let aws = Aws::from_env().await;
            let outcome = handler::handle(&aws, rule, payload, now, None).await?;
            for e in &outcome.evaluations {
                println!("{}", serde_json::to_string(e)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        cmd @ Command::Rotate { .. } => rotate(cmd).await,
        Command::Custody(cmd) => custody(cmd).await,
        Command::Scan {
            resource_types,
            key_reader_role_name,
            max_key_age_days,
            allow_aws_managed_keys,
            format,
            output,
            now,
            hsm,
        } => {
            scan(
                resource_types,
                key_reader_role_name,
                max_key_age_days,
                allow_aws_managed_keys,
                &format,
                output,
                now,
                hsm,
            )
            .await
        }
        Command::Demo { json, tools, report_dir } => {
            let report =
                kms_rotation_guard::demo::run(kms_rotation_guard::demo::DemoOptions { tools, json, report_dir })
                    .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn rotate(cmd: Command) -> anyhow::Result<ExitCode> {
    use kms_rotation_guard::remediation::{self, Outcome};
    use kms_rotation_guard::rotation::{RotationRequest, Rotator};
    let Command::Rotate {
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
    } = cmd
    else {
        unreachable!()
    };
    // Checked before the HSM is opened or a PIN read: a typo must not cost a login.
    let params = kms_rotation_guard::params::RuleParams::parse(rule_parameters.as_deref())?;
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
    if force {
        eprintln!("==> --force: rotating without the \"does it need rotating?\" gate");
        let (plan, record) = rotator.rotate(&request).await?;
        match record {
            None => println!("{plan}"),
            Some(r) => println!("{}", serde_json::to_string(&r)?),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let claim_id = format!("cli-{}", remediation::new_claim_id());
    let outcome =
        remediation::rotate_if_needed(&aws, &rotator, &request, &params, &claim_id, remediation::DEFAULT_CLAIM_SETTLE)
            .await?;
    match outcome {
        Outcome::Skipped(reason) => {
            eprintln!("==> not rotated: {reason}");
            println!("{}", serde_json::json!({ "status": "skipped", "reason": reason }));
        }
        Outcome::Planned { reason, plan } => {
            eprintln!("==> due: {reason}");
            println!("{plan}");
        }
        Outcome::Rotated { record, .. } => println!("{}", serde_json::to_string(&record)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The key material source of `materials` and `reimport`.
fn open_source(args: &HsmArgs) -> anyhow::Result<Box<dyn kms_rotation_guard::rotation::hsm::KeyMaterialSource>> {
    use kms_rotation_guard::rotation::hsm::{HsmPin, Pkcs11Source, SoftwareSource};
    if args.hsm == "software" {
        return Ok(Box::new(SoftwareSource::new_insecure_for_development()));
    }
    let pin = if args.pin_stdin {
        // Zeroized on drop, and large enough that reading a PIN never reallocates (a
        // reallocation would leave a copy in freed memory).
        let mut line = zeroize::Zeroizing::new(String::with_capacity(1024));
        std::io::stdin().read_line(&mut line).context("cannot read the PIN from standard input")?;
        let len = line.trim_end_matches(['\r', '\n']).len();
        line.truncate(len);
        HsmPin::from(line)
    } else {
        HsmPin::new(std::env::var("KRG_PKCS11_PIN").map_err(|_| anyhow!("set KRG_PKCS11_PIN or pass --pin-stdin"))?)
    };
    let module = args.pkcs11_module.as_ref().expect("required by clap");
    let label = args.token_label.as_ref().expect("required by clap");
    Ok(Box::new(Pkcs11Source::open(module, label, &pin)?))
}

async fn custody(cmd: CustodyCommand) -> anyhow::Result<ExitCode> {
    use kms_rotation_guard::rotation::{ReimportRequest, Rotator};
    let aws = Aws::from_env().await;
    match cmd {
        CustodyCommand::Materials { key, hsm, json } => {
            let source = open_source(&hsm)?;
            let report = Rotator::new(&aws, source.as_ref()).materials_report(&key).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            // Exit 1 when KMS is the only holder of some material: an operator must see it.
            Ok(if report.materials.iter().all(|m| m.held) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        CustodyCommand::Reimport {
            key,
            key_material_id,
            hsm,
            wrapping_algorithm,
            wrapping_key_spec,
            dry_run,
            json,
        } => {
            let source = open_source(&hsm)?;
            let rotator = Rotator::new(&aws, source.as_ref())
                .wrapping(wrapping_algorithm.map(|a| a.parse()).transpose()?, wrapping_key_spec.parse()?)
                .on_step(|step, text| eprintln!("==> {step:?}: {text}"));
            let report = rotator.reimport(&ReimportRequest { key, key_material_id, dry_run }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[allow(clippy::too_many_arguments)] // the command's flags, passed through
async fn scan(
    types: Vec<String>,
    key_reader_role_name: Option<String>,
    max_key_age_days: i64,
    allow_aws_managed_keys: bool,
    format: &str,
    output: Option<PathBuf>,
    now: Option<String>,
    hsm: Option<HsmArgs>,
) -> anyhow::Result<ExitCode> {
    use kms_rotation_guard::audit::{self, AuditRow};
    use kms_rotation_guard::key::Home;
    use kms_rotation_guard::params::RuleParams;
    use kms_rotation_guard::resource::ResourceType;
    use std::io::IsTerminal;

    let now = parse_now(now.as_deref())?;
    // The same validation as the rules' parameters.
    let mut raw =
        serde_json::json!({ "maxKeyAgeDays": max_key_age_days, "allowAwsManagedKeys": allow_aws_managed_keys });
    if let Some(r) = key_reader_role_name {
        raw["keyReaderRoleName"] = r.into();
    }
    let params = RuleParams::from_value(&raw)?;
    let types: Vec<ResourceType> = if types.is_empty() {
        ResourceType::ALL.to_vec()
    } else {
        types.iter().filter_map(|t| ResourceType::parse(t)).collect()
    };
    // Opened first: a wrong PIN or token label fails before the scan, not after it.
    let source = hsm.as_ref().map(open_source).transpose()?;
    let aws = Aws::from_env().await;
    let identity = aws.sts().get_caller_identity().send().await.context("sts:GetCallerIdentity failed")?;
    let account = identity.account().ok_or_else(|| anyhow!("GetCallerIdentity returned no account"))?;
    let home = Home::new(aws.region(), account);

    let progress = std::io::stderr().is_terminal().then(|| {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(std::time::Duration::from_millis(120));
        p.set_message(format!("listing resources in {account} {}", home.region));
        p
    });
    let resources = handler::enumerate(&aws, &types, &home).await?;
    if let Some(p) = &progress {
        p.set_message(format!("judging {} resources", resources.len()));
    }
    let assessments = handler::assess(&aws, &params, account, resources, now).await?;
    let mut rows: Vec<AuditRow> = assessments.iter().map(|a| AuditRow::new(a, &params, now)).collect();
    let mut notes = Vec::new();
    if let Some(source) = &source {
        if let Some(p) = &progress {
            p.set_message("asking the HSM which key materials it holds");
        }
        let rotator = kms_rotation_guard::rotation::Rotator::new(&aws, source.as_ref());
        notes = audit::fill_custody(&mut rows, &rotator, account).await;
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    for note in notes {
        eprintln!("warning: {note}");
    }
    let text = match format {
        "json" => audit::json(&rows),
        "csv" => audit::csv(&rows),
        "html" => {
            let header = audit::html::ReportHeader::new(vec![account.to_string()], &home.region, now, &params);
            audit::html::render(&header, &rows)
        }
        _ => audit::table(&rows, output.is_none() && audit::colour_stdout()),
    };
    match &output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    let non_compliant = rows.iter().any(|r| r.compliance == kms_rotation_guard::verdict::Compliance::NonCompliant);
    Ok(if non_compliant { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The rule for an event: by the resource type of a change, else by the rule name.
fn infer_rule(inv: &event::Invocation) -> anyhow::Result<Rule> {
    let by_type = match &inv.trigger {
        event::Trigger::Change { item, .. } => {
            item.get("resourceType").and_then(|t| t.as_str()).and_then(Rule::for_type)
        }
        event::Trigger::Oversized { summary } => Rule::for_type(&summary.resource_type),
        event::Trigger::Periodic { .. } => None,
    };
    by_type
        .or_else(|| {
            inv.rule_name().and_then(|n| kms_rotation_guard::rule::ALL.into_iter().find(|r| n.contains(r.name)))
        })
        .ok_or_else(|| anyhow!("cannot tell which rule this event is for: pass --rule rds|dynamodb|s3"))
}
