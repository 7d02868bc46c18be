//! `demo`: the main job on one machine: local emulators, a seeded estate of three accounts
//! (dev, int, prod), the rule handlers' periodic evaluation, rotation of every non-compliant
//! imported key through SoftHSM, and a second evaluation showing what changed; the auditor's
//! report is the organization report (`estate::report`). Part of the CLI, never of the
//! library: the Lambdas cannot reach it. It starts emulators and stops every one it started.
//!
//! Layout, chosen for what the emulators can do (docs/emulators.md):
//! - LocalStack's KMS and STS play the security account holding the keys (BYOK import
//!   works there), reached with per-service endpoints as `AWS_ENDPOINT_URL_KMS` would;
//! - one moto server per workload account (dev, int, prod) plays RDS, DynamoDB, S3 and Config.
//!
//! Steps run in order in `demo` (numbered comments); a new step goes at the end, before the
//! emulators are stopped, in a file of its own.

mod emulators;
mod runbook;
mod steps;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use aws_sdk_kms::types::OriginType;
use chrono::Utc;
use kms_rotation_guard::audit::AuditRow;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rotation::hsm::{HsmPin, Pkcs11Source};
use kms_rotation_guard::rotation::{RotationRecord, Rotator};
use kms_rotation_guard::testbed::{self as seed, Sse};
use kms_rotation_guard::verdict::Compliance;
use serde::Serialize;

use super::exit::ExitStatus;
use super::format::chosen;
use emulators::{free_port, sdk, softhsm_token, start, tempdir, Service};
use steps::{custody, evaluate, request, tag, write_report};

const REGION: &str = "eu-west-1";
/// LocalStack's default account: the security account here.
const SECURITY: &str = "000000000000";
const READER_ROLE: &str = "kms-rotation-guard-key-reader";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The seed's three environments, one account each.
const ENVIRONMENTS: [(&str, &str); 3] = [("dev", "222222222222"), ("int", "444444444444"), ("prod", "333333333333")];

/// The whole product on this machine: local emulators, a seeded estate, evaluation,
/// rotation through SoftHSM, re-evaluation, then the runbook (inventory, a campaign dev → int →
/// prod). Starts and stops everything it needs.
#[derive(clap::Args)]
#[command(after_help = "Run it through scripts/demo, which installs the emulators first.")]
pub struct DemoArgs {
    /// table (the steps and tables, for people) or json (one document: before, rotations,
    /// after; the steps go to standard error).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Same as --format json (kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "format")]
    pub json: bool,
    /// Where scripts/setup installed the emulators.
    #[arg(long, env = "KRG_TOOLS", default_value = ".tools")]
    pub tools: PathBuf,
    /// Where the HTML reports before and after rotation are written.
    #[arg(long, default_value = "target/demo")]
    pub report_dir: PathBuf,
}

pub async fn run(mut args: DemoArgs) -> anyhow::Result<ExitStatus> {
    // The demo's steps ask only "JSON or not"; the alias and --format agree from here on.
    args.json = chosen(&args.format, args.json) == "json";
    let report = demo(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(ExitStatus::Ok)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoReport {
    pub before: Vec<AuditRow>,
    pub rotations: Vec<RotationRecord>,
    pub after: Vec<AuditRow>,
    /// before.html, before.json, after.html, after.json.
    pub reports: Vec<PathBuf>,
    pub seconds: f64,
    /// The emulators' endpoints, all stopped by the time the report is returned.
    pub endpoints: Vec<String>,
    /// The runbook over dev, int and prod keys (issue 22): inventory, plan, campaign.
    pub runbook: runbook::RunbookDemo,
}

/// One workload account: its moto server and the evaluator's view of AWS from there.
struct Workload {
    name: &'static str,
    account: &'static str,
    _moto: Service,
    aws: Aws,
}

async fn demo(opts: &DemoArgs) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let say = |text: &str| {
        if opts.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    };
    let tmp = tempdir()?;

    // 1. Emulators and an HSM token.
    say("== Starting LocalStack KMS (security account), moto for dev, int and prod, and a SoftHSM2 token");
    let conf = softhsm_token(&tmp)?;
    // Read by SoftHSM at its first C_Initialize, before any other thread touches the env.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let pin = HsmPin::new(std::fs::read_to_string(tmp.join("pin"))?);
    let hsm = Pkcs11Source::open(SOFTHSM_MODULE, "kms-rotation-guard-demo", &pin)?;

    let ls_port = free_port()?;
    let mut ls = Command::new(opts.tools.join("ls-venv/bin/python"));
    ls.args(["-m", "localstack.runtime.main"])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{ls_port}"))
        .env("SERVICES", "kms,sts")
        .env("FILESYSTEM_ROOT", tmp.join("localstack"))
        .env("LOCALSTACK_CLI", "0")
        // No DNS server: where one answers LocalStack binds port 53 and rewrites
        // /etc/resolv.conf, which nothing restores after the SIGKILL that stops it. And a
        // local certificate instead of a download (the demo speaks plain HTTP).
        .env("DNS_ADDRESS", "0")
        .env("SKIP_SSL_CERT_DOWNLOAD", "1");
    let localstack = start("LocalStack", ls, ls_port, "/_localstack/health")?;
    let security = Aws::new(sdk(&localstack.endpoint).await);

    let mut workloads = Vec::new();
    for (name, account) in ENVIRONMENTS {
        let port = free_port()?;
        let mut moto = Command::new(opts.tools.join("venv/bin/moto_server"));
        moto.args(["-H", "127.0.0.1", "-p", &port.to_string()]).env("MOTO_ACCOUNT_ID", account);
        let moto = start("moto", moto, port, "/moto-api/")?;
        // The evaluator runs in the workload account; keys are read in the security
        // account through the key-reader role, exactly as in AWS.
        let aws = Aws::new(sdk(&moto.endpoint).await)
            .with_service_endpoint("kms", localstack.endpoint.clone())
            .with_service_endpoint("sts", localstack.endpoint.clone());
        workloads.push(Workload { name, account, _moto: moto, aws });
    }

    // 2. The estate.
    say("== Seeding: 9 BYOK keys (material generated in SoftHSM and imported), resources in dev, int and prod");
    let rotator = Rotator::new(&security, &hsm);
    let mut keys = std::collections::BTreeMap::new();
    for (env, _) in ENVIRONMENTS {
        for service in ["s3", "rds", "dynamodb"] {
            let alias = format!("{env}-{service}");
            let id = seed::key(&security, &alias, OriginType::External, &[]).await?;
            rotator.rotate(&request(&id)).await?;
            keys.insert(alias, id);
        }
    }
    // The ages an auditor finds: two keys past 365 days, one without its tag, one whose
    // tag claims material KMS never had.
    let old = (Utc::now() - chrono::Duration::days(400)).format("%Y-%m-%d").to_string();
    for alias in ["prod-s3", "dev-rds"] {
        tag(&security, &keys[alias], "LastRotationDate", &old).await?;
    }
    security.kms().untag_resource().key_id(&keys["dev-s3"]).tag_keys("LastRotationDate").send().await?;
    tag(&security, &keys["prod-dynamodb"], "LastRotationKeyMaterialId", &"0".repeat(64)).await?;

    let alias_arn = |alias: &str| format!("arn:aws:kms:{REGION}:{SECURITY}:alias/{alias}");
    let key_arn = |alias: &str| format!("arn:aws:kms:{REGION}:{SECURITY}:key/{}", keys[alias]);
    for w in &workloads {
        let e = w.name;
        seed::rds_instance(&w.aws, &format!("{e}-orders"), Some(&alias_arn(&format!("{e}-rds")))).await?;
        seed::rds_cluster(&w.aws, &format!("{e}-ledger"), Some(&key_arn(&format!("{e}-rds")))).await?;
        seed::table(&w.aws, &format!("{e}-sessions"), Some(&alias_arn(&format!("{e}-dynamodb")))).await?;
        seed::bucket(&w.aws, &format!("{e}-invoices-{}", w.account), Sse::Kms(Some(&alias_arn(&format!("{e}-s3")))))
            .await?;
    }
    // What rotation cannot fix: a bucket without default encryption, SSE-S3, the AWS-owned key.
    let dev = &workloads[0];
    seed::bucket(&dev.aws, "dev-scratch-222222222222", Sse::None).await?;
    seed::bucket(&dev.aws, "dev-static-assets-222222222222", Sse::S3).await?;
    seed::table(&dev.aws, "dev-audit-trail", None).await?;

    // 3. Evaluate as Lambda does.
    say("\n== Periodic evaluation by the three rule handlers (TestMode)");
    // The emulator's gap, said once (the rotation's own per-key warning is muted in the demo).
    say("   (LocalStack has no ListKeyRotations: tags are cross-checked against the current key material id,");
    say("    and the rotations below cannot show the key's remaining on-demand rotation quota)");
    let before_at = Utc::now();
    let mut before = evaluate(&workloads, before_at).await?;
    custody(&mut before, &rotator).await;
    if !opts.json {
        print!("{}", kms_rotation_guard::audit::table(&before, kms_rotation_guard::audit::colour_stdout()));
    }

    // 4. Rotate every non-compliant imported key.
    let targets: BTreeSet<String> = before
        .iter()
        .filter(|r| r.compliance == Compliance::NonCompliant && r.origin.as_deref() == Some("EXTERNAL"))
        .filter_map(|r| r.key_arn.clone())
        .collect();
    say(&format!("\n== Rotating {} non-compliant BYOK keys (SoftHSM -> KMS, in-place)", targets.len()));
    let mut rotations = Vec::new();
    let json = opts.json;
    let printer = Rotator::new(&security, &hsm).on_step(move |step, text| {
        if json {
            eprintln!("   {step:?}: {text}");
        } else {
            println!("   {step:?}: {text}");
        }
    });
    for key in &targets {
        say(&format!(" - {key}"));
        let (_, record) = printer.rotate(&request(key)).await?;
        rotations.extend(record);
    }

    // 5. Evaluate again.
    say("\n== Evaluation after rotation");
    let after_at = Utc::now();
    let mut after = evaluate(&workloads, after_at).await?;
    custody(&mut after, &rotator).await;
    if !opts.json {
        print!("{}", kms_rotation_guard::audit::table(&after, kms_rotation_guard::audit::colour_stdout()));
        let fixed = before.iter().zip(&after).filter(|(b, a)| b.compliance != a.compliance).count();
        println!("\n{fixed} resources changed verdict.");
        let left: Vec<&AuditRow> = after.iter().filter(|r| r.compliance == Compliance::NonCompliant).collect();
        if !left.is_empty() {
            println!("Still NON_COMPLIANT, and not fixable by rotating key material (re-encrypt them with a customer managed key):");
            for r in left {
                println!("  {} {}: {}", r.resource_type, r.resource_name, r.annotation);
            }
        }
    }
    // 6. The auditor's reports.
    let mut reports = write_report(&opts.report_dir, "before", &workloads, before_at, &before)?;
    reports.extend(write_report(&opts.report_dir, "after", &workloads, after_at, &after)?);
    say("\n== The auditor's reports (self-contained HTML; the JSON is the payload its SHA-256 covers)");
    for p in &reports {
        say(&format!("   {}", p.display()));
    }

    // 7. The runbook (its own file, src/cli/demo/runbook.rs).
    let runbook = runbook::run(&security, &hsm, &say).await?;

    // 8. Everything started is stopped as `workloads`, `localstack` and `tmp` drop.
    let mut endpoints: Vec<String> = workloads.iter().map(|w| w._moto.endpoint.clone()).collect();
    endpoints.push(localstack.endpoint.clone());
    drop(workloads);
    drop(localstack);
    let _ = std::fs::remove_dir_all(&tmp);
    let seconds = started.elapsed().as_secs_f64();
    say(&format!("\nDone in {seconds:.1} s; all emulators stopped."));
    Ok(DemoReport { before, rotations, after, reports, seconds, endpoints, runbook })
}
