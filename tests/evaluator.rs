//! The evaluator against a real moto server: every sample event, cross-account keys read
//! through the key-reader role, periodic sweeps, batching and call counts, failures.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use aws_sdk_kms::types::OriginType;
use common::seed::{self, Sse};
use common::*;
use kms_rotation_guard::resource::{self, Item, ResourceType};
use kms_rotation_guard::rule::{self, Rule};
use kms_rotation_guard::{event, handler, Error};
use serde_json::Value;

fn events() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "events/ should hold a sample for every type and trigger");
    files
}

/// Every sample event parses, and every change event yields its resource, without AWS.
#[test]
fn every_sample_event_parses_and_extracts() {
    let mut seen = BTreeMap::new();
    for path in events() {
        let inv =
            event::parse_bytes(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kind = match &inv.trigger {
            event::Trigger::Change { item, .. } => {
                let t = item["resourceType"].as_str().unwrap();
                let rule = Rule::for_type(t).unwrap();
                match resource::from_configuration_item(item, rule.resource_types).unwrap() {
                    Item::Evaluate(r) => assert_eq!(r.resource_type.as_str(), t),
                    Item::NotApplicable { reason, .. } => assert!(reason.contains("Deleted"), "{reason}"),
                }
                format!("change {t}")
            }
            event::Trigger::Oversized { summary } => format!("oversized {}", summary.resource_type),
            event::Trigger::Periodic { .. } => format!("periodic {}", inv.rule_name().unwrap()),
        };
        *seen.entry(kind).or_insert(0) += 1;
    }
    for want in [
        "change AWS::RDS::DBInstance",
        "change AWS::RDS::DBCluster",
        "change AWS::DynamoDB::Table",
        "change AWS::S3::Bucket",
        "oversized AWS::S3::Bucket",
    ] {
        assert!(seen.contains_key(want), "no sample for {want}: {seen:?}");
    }
    for r in rule::ALL {
        assert!(seen.contains_key(&format!("periodic {}", r.name)), "no periodic sample for {}", r.name);
    }
}

fn run_cli(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard")).args(args).envs(moto.env()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `evaluate` on each file in events/ prints the expected verdicts, including keys in the
/// security account read through keyReaderRoleName.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_cli_gives_the_expected_verdict_for_every_sample_event() {
    let moto = Moto::start();
    let keys = seed::event_estate(&moto).await;
    let dir = tempdir::TempDir::new("sample-events");
    let now = days_from_now(30).to_rfc3339();
    // file → (resource id or name → (compliance, annotation fragment))
    type Expected<'a> = &'a [(&'a str, &'a [(&'a str, &'a str, &'a str)])];
    let expected: Expected = &[
        (
            "dynamodb-periodic.json",
            &[
                ("sessions", "NON_COMPLIANT", "no LastRotationDate tag"),
                ("carts", "COMPLIANT", "30 days ago"),
                ("audit-trail", "NON_COMPLIANT", "AWS-owned"),
            ],
        ),
        ("dynamodb-table-aws-owned-key.json", &[("audit-trail", "NON_COMPLIANT", "AWS-owned key")]),
        ("dynamodb-table-change.json", &[("sessions", "NON_COMPLIANT", "has no LastRotationDate tag")]),
        ("dynamodb-table-lowercase-fields.json", &[("carts", "COMPLIANT", "rotated")]),
        (
            "rds-cluster-change.json",
            &[("cluster-LEDGERAURORA4W7X2Q5Z3K6JT", "NON_COMPLIANT", "newest key material is from")],
        ),
        ("rds-instance-change.json", &[("db-ORDERSPRODQ7ZXW3XK4JTN5LU2A", "COMPLIANT", "30 days ago, next due")]),
        ("rds-instance-deleted-key.json", &[("db-BILLINGPROD6Z3X4Q2W7LT5KJ8", "NON_COMPLIANT", "not found")]),
        ("rds-instance-deleted.json", &[("db-OLDORDERS5T2Q7W3X4K6ZJ8LY", "NOT_APPLICABLE", "ResourceDeleted")]),
        (
            "rds-instance-unencrypted.json",
            &[("db-LEGACYREPORTS2X4K7ZQ5T3W6YH", "NON_COMPLIANT", "storage encryption is off")],
        ),
        // moto gives every DB instance the same DbiResourceId, so the sweep is checked by
        // verdict, not by id (see docs/emulators.md).
        ("rds-periodic.json", &[("*", "COMPLIANT", "30 days ago, next due"), ("*", "NON_COMPLIANT", ": tag says")]),
        ("s3-bucket-aws-managed-key.json", &[("exports-prod", "NON_COMPLIANT", "alias/aws/s3 is AWS-managed")]),
        ("s3-bucket-change.json", &[("invoices-prod", "NON_COMPLIANT", "days ago, limit 365 days")]),
        ("s3-bucket-deleted.json", &[("tmp-uploads", "NOT_APPLICABLE", "ResourceDeleted")]),
        ("s3-bucket-left-scope.json", &[("invoices-prod", "NOT_APPLICABLE", "left the rule's scope")]),
        ("s3-bucket-sse-s3.json", &[("static-assets", "NON_COMPLIANT", "SSE-S3")]),
        (
            "s3-periodic.json",
            &[
                ("invoices-prod", "NON_COMPLIANT", "limit 365"),
                ("static-assets", "NON_COMPLIANT", "SSE-S3"),
                ("exports-prod", "NON_COMPLIANT", "AWS-managed"),
                ("ledger-archive", "NON_COMPLIANT", "Disabled"),
            ],
        ),
    ];
    // moto's GetResourceConfigHistory writes times as "2026-11-23 20:03:50.373176+00:00",
    // which is not RFC 3339; the SDK rejects the response and the invocation fails
    // cleanly. The oversized path is tested against an AWS-shaped endpoint in
    // tests/oversized.rs.
    const OVERSIZED: &str = "s3-bucket-oversized.json";
    let path = root().join("events").join(OVERSIZED);
    let (code, stdout, stderr) = run_cli(&moto, &["evaluate", "--event", path.to_str().unwrap(), "--now", &now]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.contains("config:GetResourceConfigHistory failed"), "{stderr}");

    let files: Vec<String> = events()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|f| f != OVERSIZED)
        .collect();
    let named: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
    assert_eq!(files, named, "every sample event has an expected verdict here");
    for (file, want) in expected {
        let path = keys.event_file(file, dir.path());
        let (code, stdout, stderr) = run_cli(&moto, &["evaluate", "--event", path.to_str().unwrap(), "--now", &now]);
        assert_eq!(code, 0, "{file}: {stderr}");
        let got: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(got.len(), want.len(), "{file}: {stdout}");
        for (id, compliance, fragment) in *want {
            let hit = got.iter().any(|e| {
                (*id == "*" || e["resourceId"] == *id)
                    && e["compliance"] == *compliance
                    && e["annotation"].as_str().unwrap().contains(fragment)
            });
            assert!(hit, "{file}: no {compliance} for {id} mentioning {fragment:?} in\n{stdout}");
        }
        for e in &got {
            for field in ["resourceType", "resourceId", "compliance", "annotation", "orderingTimestamp"] {
                assert!(e.get(field).is_some(), "{file}: {field} missing in {e}");
            }
        }
    }
}

/// 250 buckets sharing 5 security-account keys: one DescribeKey and one tag read per key,
/// one AssumeRole, and 3 PutEvaluations (100 + 100 + 50).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_sweep_reads_each_key_once_and_batches_by_100() {
    let moto = Moto::start();
    let security = assumed(&moto.endpoint, SECURITY).await;
    let today = ymd(chrono::Utc::now());
    for k in 0..5 {
        seed::key(&security, &format!("prod-s3-{k}"), OriginType::External, &[("LastRotationDate", &today)]).await;
    }
    let (wl, counter) = workload(&moto.endpoint).await;
    for b in 0..250 {
        seed::bucket(
            &wl,
            &format!("bucket-{b:03}"),
            Sse::Kms(Some(&seed::alias_arn(SECURITY, &format!("prod-s3-{}", b % 5)))),
        )
        .await;
    }
    counter.reset();
    let payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-periodic.json")).unwrap()).unwrap();
    let outcome = handler::handle(&wl, rule::S3, payload, days_from_now(1), None).await.unwrap();
    assert_eq!(outcome.evaluations.len(), 250);
    assert!(outcome.evaluations.iter().all(|e| e.annotation.contains("rotated")), "{:?}", outcome.evaluations[0]);
    let calls = counter.snapshot();
    assert!(counter.get("kms.DescribeKey") <= 5, "{calls:?}");
    assert!(counter.get("kms.ListResourceTags") <= 5, "{calls:?}");
    assert_eq!(counter.get("sts.AssumeRole"), 1, "{calls:?}");
    assert_eq!(counter.get("config.PutEvaluations"), 3, "{calls:?}");
    assert_eq!(outcome.put_evaluation_calls, 3);
    assert_eq!(counter.get("s3.GetBucketEncryption"), 250, "{calls:?}");
}

/// A key in another account without keyReaderRoleName: tags cannot be read across
/// accounts, which is a finding that says what to set. moto cannot describe another
/// account's key with our credentials (AWS can), so this runs the same-account path by
/// pointing at a key of the security account through its key ARN: moto answers
/// NotFound, which the verdict names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_reader_role_a_foreign_key_is_a_named_finding() {
    let moto = Moto::start();
    let keys = seed::event_estate(&moto).await;
    let (wl, _) = workload(&moto.endpoint).await;
    let mut payload = keys.event("rds-instance-change.json");
    payload["ruleParameters"] = Value::String("{}".into());
    let outcome = handler::handle(&wl, rule::RDS, payload, days_from_now(30), None).await.unwrap();
    let e = &outcome.evaluations[0];
    assert_eq!(e.compliance.as_str(), "NON_COMPLIANT", "{e:?}");
    assert!(e.annotation.contains(keys.id("prod-rds")), "{e:?}");
}

/// A persistent transport failure never becomes a verdict: the invocation fails, naming
/// the call and saying it was transient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_kms_fails_the_invocation_instead_of_judging() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let aws = kms_rotation_guard::aws::Aws::new(sdk_config(&dead, static_creds()).await);
    let payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-bucket-change.json")).unwrap()).unwrap();
    let err = handler::handle(&aws, rule::S3, payload, chrono::Utc::now(), None).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    // The key-reader role is assumed first; either call may be the one that fails.
    assert!(
        (text.contains("kms:DescribeKey") || text.contains("sts:AssumeRole")) && text.contains("transient"),
        "{text}"
    );
}

/// moto answers PutEvaluations without TestMode with an HTML 500: a failure to report is
/// a failed invocation, never a silent success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_fails_fails_the_invocation() {
    let moto = Moto::start();
    seed::event_estate(&moto).await;
    let (wl, counter) = workload(&moto.endpoint).await;
    let mut payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-bucket-sse-s3.json")).unwrap()).unwrap();
    payload["resultToken"] = Value::String("a-real-token-moto-cannot-record".into());
    let err = handler::handle(&wl, rule::S3, payload, chrono::Utc::now(), None).await.unwrap_err();
    assert!(matches!(err, Error::Aws { operation: "config:PutEvaluations", transient: true, .. }), "{err}");
    assert_eq!(counter.get("config.PutEvaluations"), 2, "retried by the SDK: {:?}", counter.snapshot());
}

/// Invalid rule parameters fail before any AWS call, naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_parameters_fail_before_any_call() {
    let moto = Moto::start();
    let (wl, counter) = workload(&moto.endpoint).await;
    let mut payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/dynamodb-periodic.json")).unwrap()).unwrap();
    payload["ruleParameters"] = Value::String(r#"{"maxKeyAgeDays":"0"}"#.into());
    let err = handler::handle(&wl, rule::DYNAMODB, payload, chrono::Utc::now(), None).await.unwrap_err();
    assert!(err.to_string().contains("maxKeyAgeDays"), "{err}");
    assert_eq!(counter.total(), 0, "{:?}", counter.snapshot());
}

/// A type outside the rule's scope is NOT_APPLICABLE with a reason, not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_type_outside_the_rule_is_not_applicable() {
    let moto = Moto::start();
    let (wl, _) = workload(&moto.endpoint).await;
    let payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-bucket-sse-s3.json")).unwrap()).unwrap();
    let outcome = handler::handle(&wl, rule::RDS, payload, chrono::Utc::now(), None).await.unwrap();
    assert_eq!(outcome.evaluations[0].compliance.as_str(), "NOT_APPLICABLE");
    assert!(outcome.evaluations[0].annotation.contains("not evaluated by this rule"));
    let _ = ResourceType::S3Bucket;
}

/// A sweep that cannot finish before the Lambda deadline stops short of it and fails
/// cleanly, reporting nothing, instead of being killed mid-report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_near_the_deadline_fails_cleanly() {
    // Accepts connections and never answers: every call hangs until its own timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let counter = kms_rotation_guard::aws::CallCounter::default();
    let aws =
        kms_rotation_guard::aws::Aws::new(sdk_config(&endpoint, static_creds()).await).with_counter(counter.clone());
    let payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/dynamodb-periodic.json")).unwrap()).unwrap();
    let deadline = tokio::time::Instant::now() + handler::DEADLINE_MARGIN + std::time::Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = handler::handle(&aws, rule::DYNAMODB, payload, chrono::Utc::now(), Some(deadline)).await.unwrap_err();
    assert!(matches!(err, Error::Deadline(_)), "{err}");
    assert!(err.to_string().contains("nothing was reported"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "stopped at the deadline, not at the call timeout");
    assert_eq!(counter.get("config.PutEvaluations"), 0);
}

/// ListBuckets without BucketRegion names every region's buckets, and GetBucketEncryption on
/// another region's bucket answers 301 PermanentRedirect in AWS. Each region's sweep lists
/// its own buckets only (moto 5.2.5 honours the BucketRegion filter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_regions_sweep_judges_only_its_own_buckets() {
    let moto = Moto::start();
    let in_region = |region: &'static str| {
        let endpoint = moto.endpoint.clone();
        async move {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region))
                .endpoint_url(endpoint)
                .credentials_provider(static_creds())
                .load()
                .await;
            kms_rotation_guard::aws::Aws::new(config)
        }
    };
    let (ireland, virginia) = (in_region(REGION).await, in_region("us-east-2").await);
    seed::bucket(&ireland, "ireland-1", Sse::S3).await;
    seed::bucket(&ireland, "ireland-2", Sse::S3).await;
    seed::bucket(&virginia, "ohio-1", Sse::S3).await;

    let payload: Value =
        serde_json::from_slice(&std::fs::read(root().join("events/s3-periodic.json")).unwrap()).unwrap();
    for (aws, want) in [(&ireland, vec!["ireland-1", "ireland-2"]), (&virginia, vec!["ohio-1"])] {
        let outcome = handler::handle(aws, rule::S3, payload.clone(), chrono::Utc::now(), None).await.unwrap();
        let mut got: Vec<&str> = outcome.evaluations.iter().map(|e| e.resource_id.as_str()).collect();
        got.sort();
        assert_eq!(got, want, "{}", aws.region());
    }
}
