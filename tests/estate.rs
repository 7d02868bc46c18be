//! The estate: many accounts × Regions judged in one scan (`estate::scan`), on moto.
//!
//! - One scan over 20 member accounts and 2 Regions gives exactly the rows the per-account
//!   scans give; every key is read once for the whole estate; each account's role is
//!   assumed once (not once per Region); a member whose role is refused (STS's own
//!   AccessDenied, through the fault proxy: moto assumes any role) is "not scanned" in
//!   both Regions, names the role, and makes the scan incomplete, without stopping it.
//! - The aggregator path (SelectAggregateResourceConfig, which moto lacks: an AWS-shaped
//!   endpoint answers it from the same moto estate) gives the same verdicts.
//! - An opt-in Region the members have not enabled (AWS's own refusals, through the fault
//!   proxy) is "not scanned", says why once, and makes the scan incomplete.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_kms::types::OriginType;
use common::fault_proxy::{assume_role_denied, AnsweringProxy};
use common::seed::{self, Sse};
use common::*;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::estate::{self, CoverageStatus, EstateScan, EstateSpec, MemberRole, ScanHeader};
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::resource::ResourceType;
use serde_json::{json, Value};

const REGIONS: [&str; 2] = ["eu-west-1", "eu-central-1"];
const MEMBER_ROLE: &str = "kms-rotation-guard-member";
/// A member account where the role was never deployed.
const NO_ROLE: &str = "399999999999";

fn members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{}", 300_000_000_000u64 + i as u64)).collect()
}

fn alias_in(region: &str, alias: &str) -> String {
    format!("arn:aws:kms:{region}:{SECURITY}:alias/{alias}")
}

/// Keys `fresh` and `stale` in the security account, in each Region; in each member and
/// Region a bucket and a table, on keys that vary with the account.
async fn seed_estate(moto: &Moto, accounts: &[String]) {
    let security = assumed(&moto.endpoint, SECURITY).await;
    let today = ymd(chrono::Utc::now());
    for r in REGIONS {
        let s = security.in_region(r);
        seed::key(&s, "fresh", OriginType::External, &[("LastRotationDate", &today)]).await;
        seed::key(&s, "stale", OriginType::External, &[("LastRotationDate", &ymd(days_from_now(-400)))]).await;
    }
    for (i, a) in accounts.iter().enumerate() {
        let member = assumed(&moto.endpoint, a).await;
        for r in REGIONS {
            let m = member.in_region(r);
            let bucket_key = if i % 3 == 0 { "stale" } else { "fresh" };
            seed::bucket(&m, &format!("data-{a}-{r}"), Sse::Kms(Some(&alias_in(r, bucket_key)))).await;
            let table_key = if i % 2 == 0 { "fresh" } else { "stale" };
            seed::table(&m, &format!("orders-{i}"), Some(&alias_in(r, table_key))).await;
        }
    }
}

fn spec(accounts: Vec<String>) -> EstateSpec {
    EstateSpec {
        accounts,
        regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        member_role: Some(MemberRole::new(MEMBER_ROLE).unwrap()),
        own_account: WORKLOAD.into(),
        resource_types: ResourceType::ALL.to_vec(),
        concurrency: estate::DEFAULT_CONCURRENCY,
    }
}

fn params() -> RuleParams {
    RuleParams { key_reader_role_name: Some(READER_ROLE.into()), ..RuleParams::default() }
}

/// One row's verdict as two scans are compared: (account, region, type, id, key ARN,
/// compliance, annotation).
type Verdict = (String, String, String, String, Option<String>, String, String);

/// What a verdict is, for comparing two scans.
fn verdicts(scan: &EstateScan) -> Vec<Verdict> {
    scan.rows
        .iter()
        .map(|r| {
            (
                r.account.clone(),
                r.region.clone(),
                r.resource_type.clone(),
                r.resource_id.clone(),
                r.key_arn.clone(),
                r.compliance.as_str().to_string(),
                r.annotation.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scan_of_20_accounts_and_2_regions_equals_the_per_account_scans() {
    let moto = Moto::start();
    let accounts = members(20);
    seed_estate(&moto, &accounts).await;
    let proxy = AnsweringProxy::start(moto.port, &json!([assume_role_denied(NO_ROLE, MEMBER_ROLE)]));
    let (aws, counter) = workload(&proxy.endpoint).await;
    let now = days_from_now(1);
    let mut all = accounts.clone();
    all.push(NO_ROLE.into());

    let units = AtomicUsize::new(0);
    let scan = estate::scan(&aws, &spec(all.clone()), &params(), now, &|p| {
        units.fetch_max(p.units_done, Ordering::Relaxed);
    })
    .await
    .unwrap();
    assert_eq!(units.into_inner(), 21 * 2, "progress reaches every account × Region");

    // Coverage: every member in both Regions, the one without a role not scanned, why.
    assert_eq!(scan.coverage.len(), 21 * 2);
    for c in &scan.coverage {
        if c.account == NO_ROLE {
            assert_eq!(c.status, CoverageStatus::NotScanned, "{c:?}");
            let why = c.reason.as_deref().unwrap();
            assert!(why.contains(&format!("arn:aws:iam::{NO_ROLE}:role/{MEMBER_ROLE}")), "{why}");
            assert!(why.contains("no access") && why.contains("AccessDenied"), "{why}");
        } else {
            assert_eq!((c.status, c.resources, c.reason.as_deref()), (CoverageStatus::Scanned, 2, None), "{c:?}");
        }
    }
    assert!(!scan.complete(), "a member that could not be read makes the scan incomplete");
    assert!(scan.unjudged.is_empty(), "{:?}", scan.unjudged);
    assert_eq!(scan.rows.len(), 20 * 2 * 2);

    // One role per account (not per Region; the refused one asked once for both Regions),
    // the key reader once, and one read set per key for the whole estate: 2 keys × 2 Regions.
    assert_eq!(counter.get("sts.AssumeRole"), 20 + 1 + 1, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.DescribeKey"), 4, "{:?}", counter.snapshot());
    assert_eq!(counter.get("kms.ListResourceTags"), 4, "{:?}", counter.snapshot());
    assert_eq!(scan.keys.len(), 4);
    let fresh_west = scan
        .keys
        .iter()
        .find(|k| k.key_alias.as_deref() == Some("alias/fresh") && k.key.contains("eu-west-1"))
        .unwrap();
    // Buckets of accounts i % 3 != 0 (13 of 20) and tables of even accounts (10).
    assert_eq!((fresh_west.resources, fresh_west.accounts), (13 + 10, 17), "{fresh_west:?}");

    // The verdicts: stale key → NON_COMPLIANT, and exactly those of each account's own scan.
    for (i, a) in accounts.iter().enumerate() {
        let single = estate::scan(&aws, &spec(vec![a.clone()]), &params(), now, &|_| {}).await.unwrap();
        assert!(single.complete(), "{a}: {:?}", single.coverage);
        let mine: Vec<_> = verdicts(&scan).into_iter().filter(|v| &v.0 == a).collect();
        assert_eq!(mine, verdicts(&single), "account {a}");
        let table = mine.iter().find(|v| v.2 == "AWS::DynamoDB::Table").unwrap();
        assert_eq!(table.5, if i % 2 == 0 { "COMPLIANT" } else { "NON_COMPLIANT" }, "{table:?}");
    }

    // The export: today's rows (the fields `keys --resources` reads) with coverage around them.
    let header = ScanHeader {
        scan_time: now,
        accounts: all.clone(),
        regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        source: format!("assume-role:{MEMBER_ROLE}"),
    };
    let export: Value = serde_json::from_str(&estate::export::json(&scan, &header)).unwrap();
    assert_eq!(export["kind"], "kms-rotation-guard/estate-scan");
    assert_eq!(export["complete"], false);
    assert_eq!(export["rows"].as_array().unwrap().len(), 80);
    assert_eq!(export["coverage"].as_array().unwrap().len(), 42);
    for f in ["account", "region", "resourceType", "resourceId", "keyArn"] {
        assert!(export["rows"][0][f].is_string(), "{f} in {}", export["rows"][0]);
    }
    assert_eq!(export["coverage"].as_array().unwrap().iter().filter(|c| c["status"] == "not-scanned").count(), 2);

    // The command line: one `scan --accounts` over the same estate gives the same rows, says
    // what it could not see, and exits 3 (incomplete), not 1 (non-compliant found).
    let env: Vec<(&'static str, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k, if k == "AWS_ENDPOINT_URL" { proxy.endpoint.clone() } else { v }))
        .collect();
    let now_arg = now.to_rfc3339();
    let cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(["scan", "--key-reader-role-name", READER_ROLE, "--now", &now_arg])
            .args(extra)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let regions = REGIONS.join(",");
    let (code, stdout, stderr) = cli(&["--accounts", &all.join(","), "--regions", &regions, "--format", "json"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("incomplete"), "{stderr}");
    let from_cli: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(from_cli["rows"], export["rows"], "the command's rows are the library's");
    assert_eq!(from_cli["coverage"], export["coverage"]);
    let (code, stdout, stderr) = cli(&["--accounts", &accounts[1], "--regions", &regions, "--format", "json"]);
    assert_eq!(code, Some(1), "account 1 has a table on the stale key: {stderr}");
    let single: Value = serde_json::from_str(&stdout).unwrap();
    let mine: Vec<&Value> =
        export["rows"].as_array().unwrap().iter().filter(|r| r["account"] == accounts[1].as_str()).collect();
    assert_eq!(single["rows"].as_array().unwrap().iter().collect::<Vec<_>>(), mine);
    let (code, stdout, _) = cli(&["--accounts", "12345", "--format", "json"]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""), "a bad account id is an error");
}

/// The estate as an aggregator's advanced query would give it, from what each member's
/// own APIs say about its buckets and tables (AWS-shaped: one JSON string per result).
async fn aggregated_items(moto: &Moto, accounts: &[String]) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for a in accounts {
        let member = assumed(&moto.endpoint, a).await;
        for r in REGIONS {
            let m = member.in_region(r);
            for t in m.dynamodb().list_tables().send().await.unwrap().table_names() {
                let d = m.dynamodb().describe_table().table_name(t).send().await.unwrap();
                let sse = d.table().unwrap().sse_description().unwrap();
                let item = json!({"resourceId": t, "resourceName": t, "resourceType": "AWS::DynamoDB::Table",
                    "accountId": a, "awsRegion": r, "configurationItemStatus": "OK",
                    "configuration": {"ssedescription": {"status": sse.status().unwrap().as_str(),
                        "ssetype": sse.sse_type().map(|t| t.as_str()), "kmsmasterKeyArn": sse.kms_master_key_arn()}}});
                out.entry("AWS::DynamoDB::Table").or_default().push(item.to_string());
            }
            let buckets = m.s3().list_buckets().bucket_region(r).send().await.unwrap();
            for b in buckets.buckets() {
                let name = b.name().unwrap();
                let enc = m.s3().get_bucket_encryption().bucket(name).send().await.unwrap();
                let d = enc.server_side_encryption_configuration().unwrap().rules()[0]
                    .apply_server_side_encryption_by_default()
                    .unwrap()
                    .clone();
                let item = json!({"resourceId": name, "resourceName": name, "resourceType": "AWS::S3::Bucket",
                    "accountId": a, "awsRegion": r, "configurationItemStatus": "OK",
                    "supplementaryConfiguration": {"ServerSideEncryptionConfiguration": {"rules": [
                        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": d.sse_algorithm().as_str(),
                            "kmsMasterKeyID": d.kms_master_key_id()}}]}}});
                out.entry("AWS::S3::Bucket").or_default().push(item.to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_gives_the_verdicts_of_the_assume_role_scan() {
    let moto = Moto::start();
    let accounts = members(4);
    seed_estate(&moto, &accounts).await;
    let (aws, _) = workload(&moto.endpoint).await;
    let now = days_from_now(1);
    let by_roles = estate::scan(&aws, &spec(accounts.clone()), &params(), now, &|_| {}).await.unwrap();
    assert!(by_roles.complete());
    assert_eq!(by_roles.rows.len(), 4 * 2 * 2);
    assert!(by_roles.rows.iter().any(|r| r.compliance.as_str() == "NON_COMPLIANT"));
    assert!(by_roles.rows.iter().any(|r| r.compliance.as_str() == "COMPLIANT"));

    // SelectAggregateResourceConfig and DescribeConfigurationAggregatorSourcesStatus as the
    // Config API reference gives them; pages of 3 results, so every type needs several.
    let items = aggregated_items(&moto, &accounts).await;
    let statuses: Vec<Value> = accounts
        .iter()
        .flat_map(|a| {
            REGIONS.map(|r| {
                json!({"SourceId": a, "SourceType": "ACCOUNT", "AwsRegion": r,
            "LastUpdateStatus": "SUCCEEDED", "LastUpdateTime": 1.7648064E9})
            })
        })
        .collect();
    let (config, seen) = fake_json_endpoint(move |op, body| match op {
        "describeconfigurationaggregatorsourcesstatus" => (200, json!({"AggregatedSourceStatusList": statuses})),
        "selectaggregateresourceconfig" => {
            let expr = body["Expression"].as_str().unwrap_or("");
            let t = expr.rsplit("resourceType = '").next().unwrap_or("").trim_end_matches('\'');
            let all = items.get(t).cloned().unwrap_or_default();
            let from: usize = body["NextToken"].as_str().map(|n| n.parse().unwrap()).unwrap_or(0);
            let page: Vec<&String> = all.iter().skip(from).take(3).collect();
            let mut out = json!({"Results": page, "QueryInfo": {"SelectFields": [{"Name": "resourceId"}]}});
            if from + 3 < all.len() {
                out["NextToken"] = json!((from + 3).to_string());
            }
            (200, out)
        }
        _ => (400, json!({"__type": "InvalidAction", "message": op})),
    });
    let aggregated_aws =
        Aws::new(sdk_config(&moto.endpoint, static_creds()).await).with_service_endpoint("config", config);
    let counter = kms_rotation_guard::aws::CallCounter::default();
    let aggregated_aws = aggregated_aws.with_counter(counter.clone());
    let by_aggregator =
        estate::aggregator::scan(&aggregated_aws, "org-aggregator", &spec(accounts.clone()), &params(), now, &|_| {})
            .await
            .unwrap();

    assert_eq!(verdicts(&by_aggregator), verdicts(&by_roles));
    assert_eq!(by_aggregator.coverage, by_roles.coverage);
    assert!(by_aggregator.complete());
    // No role assumed in any member: only the key reader of the security account.
    assert_eq!(counter.get("sts.AssumeRole"), 1, "{:?}", counter.snapshot());
    // One query per resource type, each read to its last page.
    let seen = seen.lock().unwrap();
    let queries: Vec<&Value> =
        seen.iter().filter(|(op, _)| op == "selectaggregateresourceconfig").map(|(_, b)| b).collect();
    let first_pages = queries.iter().filter(|b| b.get("NextToken").is_none()).count();
    assert_eq!(first_pages, ResourceType::ALL.len(), "one query per type");
    assert!(queries.iter().all(|b| b["ConfigurationAggregatorName"] == "org-aggregator" && b["Limit"] == 100));
    // 4 accounts × 2 Regions = 8 tables and 8 buckets: three pages each.
    for t in ["AWS::DynamoDB::Table", "AWS::S3::Bucket"] {
        assert_eq!(
            queries.iter().filter(|b| b["Expression"].as_str().unwrap().ends_with(&format!("'{t}'"))).count(),
            3
        );
    }
}

/// An opt-in Region the members have not enabled: AWS refuses their credentials there with
/// "The security token included in the request is invalid", as UnrecognizedClientException
/// on JSON services (DynamoDB) and InvalidClientTokenId on query services (RDS). Injected
/// through the fault proxy for requests signed for ap-east-1 (moto serves every Region).
/// The coverage says so once per account, the enabled Region is judged, and the scan is
/// incomplete. (S3 is left out: its answer in a disabled Region is not documented.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_in_region_not_enabled_is_not_scanned_and_says_why() {
    const DISABLED: &str = "ap-east-1";
    let moto = Moto::start();
    let accounts = members(2);
    seed_estate(&moto, &accounts).await;
    let invalid = "The security token included in the request is invalid.";
    let proxy = AnsweringProxy::start(
        moto.port,
        &json!([
            {
                "match": ["DynamoDB_20120810.ListTables"],
                "region": DISABLED,
                "status": 400,
                "content_type": "application/x-amz-json-1.0",
                "error_type": "UnrecognizedClientException",
                "body": json!({"__type": "com.amazon.coral.service#UnrecognizedClientException", "message": invalid}).to_string(),
            },
            {
                "match": ["Action=DescribeDB"],
                "region": DISABLED,
                "status": 403,
                "content_type": "text/xml",
                "body": format!("<ErrorResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><Error><Type>Sender</Type>\
                    <Code>InvalidClientTokenId</Code><Message>{invalid}</Message></Error>\
                    <RequestId>0e0bcb5b-7bd6-4b1e-9a1c-5d6b7c0a6f21</RequestId></ErrorResponse>"),
            },
        ]),
    );
    let (aws, _counter) = workload(&proxy.endpoint).await;
    let spec = EstateSpec {
        regions: vec!["eu-west-1".into(), DISABLED.into()],
        resource_types: vec![ResourceType::RdsDbInstance, ResourceType::RdsDbCluster, ResourceType::DynamoDbTable],
        ..spec(accounts.clone())
    };
    let scan = estate::scan(&aws, &spec, &params(), days_from_now(1), &|_| {}).await.unwrap();

    assert_eq!(scan.coverage.len(), 4);
    for c in &scan.coverage {
        if c.region == DISABLED {
            assert_eq!((c.status, c.resources), (CoverageStatus::NotScanned, 0), "{c:?}");
            let why = c.reason.as_deref().unwrap();
            assert!(why.starts_with("opt-in Region ap-east-1 is not enabled for this account ("), "{why}");
            assert_eq!(why.matches("opt-in Region").count(), 1, "said once: {why}");
            assert!(why.contains(invalid), "{why}");
        } else {
            assert_eq!((c.status, c.resources, c.reason.as_deref()), (CoverageStatus::Scanned, 1, None), "{c:?}");
        }
    }
    assert!(proxy.answered(0) >= 2 && proxy.answered(1) >= 2, "both services refused in both members");
    assert!(!scan.complete(), "a Region that could not be read makes the scan incomplete");
    let judged: Vec<_> = scan.rows.iter().map(|r| (r.account.as_str(), r.region.as_str())).collect();
    assert_eq!(judged.len(), 2, "the two members' tables in eu-west-1: {judged:?}");
    assert!(judged.iter().all(|(_, r)| *r == "eu-west-1"));
}
