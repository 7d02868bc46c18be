//! Organization rules on moto: one function (in the administrator account) invoked by
//! Config of every member account. Each invocation assumes the member's execution role,
//! enumerates there and calls PutEvaluations there; a member without the role fails alone.
//!
//! moto models STS into any account and a Config backend per account; it does not refuse
//! AssumeRole of a role that does not exist, so the fault proxy answers that one with STS's
//! own AccessDenied body (docs/emulators.md).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_kms::types::OriginType;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use common::fault_proxy::{assume_role_denied, AnsweringProxy};
use common::org_events::{event, periodic};
use common::seed::{self, Sse};
use common::*;
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::error::ErrorClass;
use kms_rotation_guard::{handler, rule, Error};
use serde_json::{json, Value};

const MEMBERS: [&str; 3] = ["222222222222", "333333333333", "555555555555"];
/// A member account where the execution role was never deployed.
const NO_ROLE: &str = "444444444444";
const EXECUTION_ROLE: &str = "kms-rotation-guard-member";

/// PutEvaluations requests as sent: the access key that signed each, and its body.
#[derive(Debug, Clone, Default)]
struct Puts(Arc<Mutex<Vec<(String, Value)>>>);

impl Intercept for Puts {
    fn name(&self) -> &'static str {
        "Puts"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        if req.headers().get("x-amz-target").is_some_and(|t| t.ends_with("PutEvaluations")) {
            let auth = req.headers().get("authorization").unwrap_or("");
            let key = auth.split("Credential=").nth(1).and_then(|s| s.split('/').next()).unwrap_or("").to_string();
            let body = req.body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
            self.0.lock().unwrap().push((key, body));
        }
        Ok(())
    }
}

fn bucket_change(account: &str, bucket: &str, key: &str, params: &Value) -> Value {
    let item = json!({
        "resourceType": "AWS::S3::Bucket", "resourceId": bucket, "resourceName": bucket,
        "awsAccountId": account, "awsRegion": REGION, "configurationItemStatus": "OK",
        "configurationItemCaptureTime": chrono::Utc::now().to_rfc3339(),
        "configuration": {"name": bucket},
        "supplementaryConfiguration": {"ServerSideEncryptionConfiguration": {"rules": [
            {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyID": key}}]}},
    });
    let invoking = json!({"configurationItem": item, "messageType": "ConfigurationItemChangeNotification",
        "notificationCreationTime": chrono::Utc::now().to_rfc3339(), "recordVersion": "1.0"});
    event(account, invoking, params)
}

/// Buckets per member: (name, key alias in the security account or the member's own key).
fn estate() -> BTreeMap<&'static str, Vec<(String, &'static str)>> {
    BTreeMap::from([
        (MEMBERS[0], vec![("dev-a-fresh".into(), "fresh"), ("dev-a-stale".into(), "stale")]),
        (MEMBERS[1], vec![("int-b-fresh".into(), "fresh")]),
        (
            MEMBERS[2],
            vec![("prod-c-stale".into(), "stale"), ("prod-c-own".into(), "own"), ("prod-c-fresh".into(), "fresh")],
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_rules_judge_each_member_in_its_own_account() {
    let moto = Moto::start();
    // Keys in the security account; one member also keeps a key of its own.
    let security = assumed(&moto.endpoint, SECURITY).await;
    let today = ymd(chrono::Utc::now());
    seed::key(&security, "fresh", OriginType::External, &[("LastRotationDate", &today)]).await;
    seed::key(&security, "stale", OriginType::External, &[("LastRotationDate", &ymd(days_from_now(-400)))]).await;
    for (account, buckets) in estate() {
        let member = assumed(&moto.endpoint, account).await;
        if buckets.iter().any(|(_, k)| *k == "own") {
            seed::key(&member, "own", OriginType::External, &[("LastRotationDate", &today)]).await;
        }
        for (name, key) in buckets {
            let owner = if key == "own" { account } else { SECURITY };
            seed::bucket(&member, &name, Sse::Kms(Some(&seed::alias_arn(owner, key)))).await;
        }
    }
    // Something in the administrator's own account that no member invocation may report.
    let (admin, _) = workload(&moto.endpoint).await;
    seed::bucket(&admin, "admin-own-bucket", Sse::S3).await;

    // The function, reaching AWS through the proxy that refuses the role of NO_ROLE.
    let proxy = AnsweringProxy::start(moto.port, &json!([assume_role_denied(NO_ROLE, EXECUTION_ROLE)]));
    let puts = Puts::default();
    let (function, counter): (Aws, CallCounter) = {
        let (aws, counter) = workload(&proxy.endpoint).await;
        (aws.with_interceptor(puts.clone()), counter)
    };
    let params = json!({"executionRoleName": EXECUTION_ROLE, "keyReaderRoleName": READER_ROLE});
    let now = days_from_now(1);

    // Four members invoke at once (Config does not wait for one account to finish).
    let accounts: Vec<&str> = MEMBERS.iter().copied().chain([NO_ROLE]).collect();
    let outcomes = futures_util::future::join_all(
        accounts
            .iter()
            .map(|a| handler::handle_as(&function, rule::S3, periodic(a, &params), now, None, Some(EXECUTION_ROLE))),
    )
    .await;
    let by_account: BTreeMap<&str, _> = accounts.iter().copied().zip(outcomes).collect();

    // The member without the role fails alone, with a stable errorType and what to do.
    let err = by_account[NO_ROLE].as_ref().unwrap_err();
    assert!(matches!(err, Error::MemberRole { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::MemberRoleUnavailable);
    assert_eq!(err.class().as_str(), "MemberRoleUnavailable");
    let text = err.to_string();
    let role_arn = format!("arn:aws:iam::{NO_ROLE}:role/{EXECUTION_ROLE}");
    for words in [role_arn.as_str(), "AccessDenied", "member-role.yaml"] {
        assert!(text.contains(words), "{text} lacks {words}");
    }
    assert_eq!(proxy.answered(0), 1, "STS's AccessDenied was sent");

    // Every other member: its own buckets, judged, reported in its own account.
    let expected = estate();
    for account in MEMBERS {
        let outcome = by_account[account].as_ref().unwrap_or_else(|e| panic!("{account}: {e}"));
        let got: BTreeMap<&str, &str> =
            outcome.evaluations.iter().map(|e| (e.resource_id.as_str(), e.compliance.as_str())).collect();
        let want: BTreeMap<&str, &str> = expected[account]
            .iter()
            .map(|(b, k)| (b.as_str(), if *k == "stale" { "NON_COMPLIANT" } else { "COMPLIANT" }))
            .collect();
        assert_eq!(got, want, "{account}");
    }

    // Where the evaluations went: each PutEvaluations was signed with the credentials of
    // the member's role, which moto (like AWS) attributes to that member account.
    let mut per_account: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, body) in puts.0.lock().unwrap().clone() {
        let mut ids: Vec<String> = body["Evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ComplianceResourceId"].as_str().unwrap().to_string())
            .collect();
        per_account.entry(key).or_default().append(&mut ids);
    }
    let mut landed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for account in MEMBERS {
        let role = format!("arn:aws:iam::{account}:role/{EXECUTION_ROLE}");
        // The cached credentials: the same access key that signed the member's reports.
        let creds = function.assume_role(&role, "test").await.unwrap();
        let as_member = function.for_account(creds.clone());
        let who = as_member.sts().get_caller_identity().send().await.unwrap();
        assert_eq!(who.account(), Some(account), "moto attributes the role's credentials to the member");
        let mut ids = per_account.remove(creds.access_key_id()).unwrap_or_default();
        ids.sort();
        landed.insert(account.to_string(), ids);
    }
    assert!(per_account.is_empty(), "PutEvaluations signed by an unknown principal: {per_account:?}");
    for account in MEMBERS {
        let mut want: Vec<String> = expected[account].iter().map(|(b, _)| b.clone()).collect();
        want.sort();
        assert_eq!(landed[account], want, "evaluations reported in {account}");
    }

    // One AssumeRole per member and one for the key reader of the security account (the
    // member's own key is read through the member role: no reader role there), plus the
    // refused one.
    assert_eq!(counter.get("sts.AssumeRole"), 3 + 1 + 1, "{:?}", counter.snapshot());
    // Rules read each key once per invocation: A's two keys, B's one, C's three.
    assert_eq!(counter.get("kms.DescribeKey"), 2 + 1 + 3, "{:?}", counter.snapshot());

    // Warm invocations: credentials come from the cache; only the refused role is asked again.
    let before = counter.get("sts.AssumeRole");
    let change = bucket_change(MEMBERS[1], "int-b-fresh", &seed::alias_arn(SECURITY, "stale"), &params);
    let outcome = handler::handle_as(&function, rule::S3, change, now, None, Some(EXECUTION_ROLE)).await.unwrap();
    assert_eq!(outcome.evaluations.len(), 1);
    assert_eq!(outcome.evaluations[0].compliance.as_str(), "NON_COMPLIANT", "the item as the event gives it");
    let again = handler::handle_as(&function, rule::S3, periodic(NO_ROLE, &params), now, None, Some(EXECUTION_ROLE));
    assert!(matches!(again.await, Err(Error::MemberRole { .. })));
    assert_eq!(counter.get("sts.AssumeRole"), before + 1, "{:?}", counter.snapshot());

    // A function configured for organization rules enters members only through its own
    // role: an event naming another is refused (the rule parameters come from whoever's
    // Config invokes it); an event naming none gets the function's role.
    let other = json!({"executionRoleName": "OrganizationAccountAccessRole"});
    let err = handler::handle_as(&function, rule::S3, periodic(MEMBERS[0], &other), now, None, Some(EXECUTION_ROLE))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidParameter);
    assert!(err.to_string().contains("executionRoleName"), "{err}");
    let unnamed = json!({"keyReaderRoleName": READER_ROLE});
    let outcome =
        handler::handle_as(&function, rule::S3, periodic(MEMBERS[1], &unnamed), now, None, Some(EXECUTION_ROLE))
            .await
            .unwrap();
    let ids: Vec<&str> = outcome.evaluations.iter().map(|e| e.resource_id.as_str()).collect();
    assert_eq!(ids, ["int-b-fresh"], "judged in the member, through the function's role");
}
