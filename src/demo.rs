//! The main job on one machine: local emulators, a seeded two-account estate, the rule
//! handlers' periodic evaluation, rotation of every non-compliant imported key through
//! SoftHSM, and a second evaluation showing what changed.
//!
//! Layout, chosen for what the emulators can do (README, "Emulator gaps"):
//! - LocalStack's KMS and STS play the security account holding the keys (BYOK import
//!   works there), reached with per-service endpoints as `AWS_ENDPOINT_URL_KMS` would;
//! - one moto server per workload account (dev, prod) plays RDS, DynamoDB, S3 and Config.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::types::{OriginType, Tag};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use crate::audit::AuditRow;
use crate::aws::Aws;
use crate::key::KeyLookup;
use crate::params::RuleParams;
use crate::rotation::hsm::{HsmPin, Pkcs11Source, WrappingAlgorithm, WrappingKeySpec};
use crate::rotation::{RotationRecord, RotationRequest, Rotator};
use crate::verdict::Compliance;
use seed::Sse;

const REGION: &str = "eu-west-1";
/// LocalStack's default account: the security account here.
const SECURITY: &str = "000000000000";
const READER_ROLE: &str = "kms-rotation-guard-key-reader";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Where output goes: a person (tables, steps) or a test (one JSON document).
pub struct DemoOptions {
    pub tools: PathBuf,
    pub json: bool,
    /// Where the auditor's HTML reports (and their JSON payloads) before and after
    /// rotation are written.
    pub report_dir: PathBuf,
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
}

/// A process the demo started; killed (with its process group) when dropped, so the demo
/// leaves nothing running however it ends.
struct Service {
    name: &'static str,
    child: Child,
    endpoint: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
        tracing::debug!(service = self.name, "stopped");
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(name: &'static str, mut cmd: Command, port: u16, health: &str) -> anyhow::Result<Service> {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {name} (run scripts/setup)"))?;
    let mut service = Service { name, child, endpoint: format!("http://127.0.0.1:{port}") };
    let started = Instant::now();
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!("{name} exited at start with {status}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && http_ok(port, health) {
            return Ok(service);
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("{name} did not answer on port {port} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bare HTTP/1.0 GET: is the emulator serving yet (not just listening)?
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") && &buf[9..12] == b"200"
}

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new("demo", "demo", None, None, "demo"))
        .timeout_config(crate::aws::timeouts())
        .load()
        .await
}

/// One workload account: its moto server and the evaluator's view of AWS from there.
struct Workload {
    name: &'static str,
    account: &'static str,
    _moto: Service,
    aws: Aws,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoReport> {
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
    say("== Starting LocalStack KMS (security account), moto for dev and prod, and a SoftHSM2 token");
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
        .env("LOCALSTACK_CLI", "0");
    let localstack = start("LocalStack", ls, ls_port, "/_localstack/health")?;
    let security = Aws::new(sdk(&localstack.endpoint).await);

    let mut workloads = Vec::new();
    for (name, account) in [("dev", "222222222222"), ("prod", "333333333333")] {
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
    say("== Seeding: 6 BYOK keys (material generated in SoftHSM and imported), resources in dev and prod");
    let rotator = Rotator::new(&security, &hsm);
    let mut keys = std::collections::BTreeMap::new();
    for env in ["dev", "prod"] {
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
        print!("{}", crate::audit::table(&before, crate::audit::colour_stdout()));
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
        print!("{}", crate::audit::table(&after, crate::audit::colour_stdout()));
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

    // 7. Everything started is stopped as `workloads`, `localstack` and `tmp` drop.
    let mut endpoints: Vec<String> = workloads.iter().map(|w| w._moto.endpoint.clone()).collect();
    endpoints.push(localstack.endpoint.clone());
    drop(workloads);
    drop(localstack);
    let _ = std::fs::remove_dir_all(&tmp);
    let seconds = started.elapsed().as_secs_f64();
    say(&format!("\nDone in {seconds:.1} s; all emulators stopped."));
    Ok(DemoReport { before, rotations, after, reports, seconds, endpoints })
}

/// The demo's rotations: LocalStack's ImportKeyMaterial rejects RSA_AES_KEY_WRAP_SHA_1
/// (which AWS accepts and SoftHSM can do), so the OAEP variant is pinned here.
fn request(key: &str) -> RotationRequest {
    RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(key)
    }
}

async fn tag(aws: &Aws, key: &str, k: &str, v: &str) -> anyhow::Result<()> {
    aws.kms().tag_resource().key_id(key).tags(Tag::builder().tag_key(k).tag_value(v).build()?).send().await?;
    Ok(())
}

fn params() -> RuleParams {
    RuleParams { key_reader_role_name: Some(READER_ROLE.into()), ..RuleParams::default() }
}

/// `<stage>.html` and `<stage>.json` in `dir`; returns their paths.
fn write_report(
    dir: &Path,
    stage: &str,
    workloads: &[Workload],
    at: chrono::DateTime<Utc>,
    rows: &[AuditRow],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = &dir.canonicalize()?;
    let accounts = workloads.iter().map(|w| w.account.to_string()).collect();
    let header = crate::audit::html::ReportHeader::new(accounts, REGION, at, &params());
    let html = dir.join(format!("{stage}.html"));
    let json = dir.join(format!("{stage}.json"));
    std::fs::write(&html, crate::audit::html::render(&header, rows))
        .with_context(|| format!("cannot write {}", html.display()))?;
    std::fs::write(&json, crate::audit::json(rows)).with_context(|| format!("cannot write {}", json.display()))?;
    Ok(vec![html, json])
}

/// Whether SoftHSM holds each key's current material, as `scan --hsm` reports it: the keys
/// live in the security account, where the rotator's credentials act.
async fn custody(rows: &mut [AuditRow], rotator: &Rotator<'_>) {
    for note in crate::audit::fill_custody(rows, rotator, SECURITY).await {
        eprintln!("   warning: {note}");
    }
}

/// Every rule's periodic handler in every workload account, as Lambda runs it.
async fn evaluate(workloads: &[Workload], now: chrono::DateTime<Utc>) -> anyhow::Result<Vec<AuditRow>> {
    let params = params();
    let mut rows = Vec::new();
    for w in workloads {
        for rule in crate::rule::ALL {
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
            let outcome = crate::handler::handle(&w.aws, rule, payload, now, None).await?;
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

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kms-rotation-guard-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tokens"))?;
    Ok(dir)
}

/// A fresh SoftHSM2 token with a random PIN, in the demo's own directory.
fn softhsm_token(dir: &Path) -> anyhow::Result<PathBuf> {
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )?;
    let mut pin = [0u8; 8];
    getrandom::fill(&mut pin).map_err(|e| anyhow!("no randomness: {e}"))?;
    let pin: String = pin.iter().map(|b| char::from(b'0' + b % 10)).collect();
    std::fs::write(dir.join("pin"), &pin)?;
    // A throwaway development token: its PINs on softhsm2-util's command line are acceptable.
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "kms-rotation-guard-demo", "--so-pin", "12345678", "--pin", &pin])
        .output()
        .context("softhsm2-util not found: run scripts/setup")?;
    if !out.status.success() {
        bail!("softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(conf)
}

/// Builds estates through the same SDK the product uses: the demo and the tests seed with it.
pub mod seed {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification,
    };
    use aws_sdk_kms::types::{OriginType, Tag};
    use aws_sdk_s3::types::{
        CreateBucketConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };

    use crate::aws::Aws;

    /// Creates a key with an alias and tags; returns its key id.
    pub async fn key(aws: &Aws, alias: &str, origin: OriginType, tags: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut req = aws.kms().create_key().origin(origin).description(format!("{alias} data key"));
        for (k, v) in tags {
            req = req.tags(Tag::builder().tag_key(*k).tag_value(*v).build()?);
        }
        let id = req
            .send()
            .await?
            .key_metadata()
            .map(|m| m.key_id().to_string())
            .ok_or_else(|| anyhow::anyhow!("CreateKey returned no key"))?;
        aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&id).send().await?;
        Ok(id)
    }

    /// A DB instance; encrypted with `key` when given.
    pub async fn rds_instance(aws: &Aws, name: &str, key: Option<&str>) -> anyhow::Result<()> {
        aws.rds()
            .create_db_instance()
            .db_instance_identifier(name)
            .db_instance_class("db.t3.micro")
            .engine("postgres")
            .master_username("app")
            .master_user_password("demo-password-1")
            .allocated_storage(20)
            .storage_encrypted(key.is_some())
            .set_kms_key_id(key.map(str::to_string))
            .send()
            .await?;
        Ok(())
    }

    /// An Aurora cluster; encrypted with `key` when given.
    pub async fn rds_cluster(aws: &Aws, name: &str, key: Option<&str>) -> anyhow::Result<()> {
        aws.rds()
            .create_db_cluster()
            .db_cluster_identifier(name)
            .engine("aurora-postgresql")
            .master_username("app")
            .master_user_password("demo-password-1")
            .storage_encrypted(key.is_some())
            .set_kms_key_id(key.map(str::to_string))
            .send()
            .await?;
        Ok(())
    }

    /// A table on `key`, or on the AWS-owned key.
    pub async fn table(aws: &Aws, name: &str, key: Option<&str>) -> anyhow::Result<()> {
        let mut req = aws
            .dynamodb()
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build()?,
            )
            .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build()?);
        if let Some(k) = key {
            req = req.sse_specification(
                SseSpecification::builder().enabled(true).sse_type("KMS".into()).kms_master_key_id(k).build(),
            );
        }
        req.send().await?;
        Ok(())
    }

    /// A bucket's default encryption.
    pub enum Sse<'a> {
        /// No default encryption configuration.
        None,
        /// SSE-S3 (AES256).
        S3,
        /// SSE-KMS with this key, or the AWS-managed `aws/s3` key.
        Kms(Option<&'a str>),
    }

    pub async fn bucket(aws: &Aws, name: &str, sse: Sse<'_>) -> anyhow::Result<()> {
        aws.s3()
            .create_bucket()
            .bucket(name)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder().location_constraint(aws.region().as_str().into()).build(),
            )
            .send()
            .await?;
        let default = match sse {
            Sse::None => return Ok(()),
            Sse::S3 => ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256),
            Sse::Kms(k) => ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .set_kms_master_key_id(k.map(str::to_string)),
        };
        let rule =
            ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default.build()?).build();
        aws.s3()
            .put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
            .send()
            .await?;
        Ok(())
    }
}
