//! Expiring imported material, as AWS answers for it (issue 19). KMS makes the whole key
//! unusable when ANY permanently associated material expires (Developer Guide, "Delete
//! imported key material"), and DescribeKey's ValidTo is "the earliest time at which any
//! imported key material permanently associated with this KMS key expires" (KeyMetadata).
//!
//! moto has the table, the key and its tags but neither ValidTo nor ListKeyRotations with
//! material: the fault proxy patches DescribeKey and answers ListKeyRotations with the API
//! reference's shapes (RotationsListEntry).

use super::*;
use common::fault_proxy::{epoch, kms_reply, AnsweringProxy};
use kms_rotation_guard::remediation::{self, Outcome};
use kms_rotation_guard::verdict::Compliance;
use kms_rotation_guard::{handler, rule};
use serde_json::json;

/// The NON_CURRENT material that expires, and the CURRENT one that never does.
const OLD: &str = "8f1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const NEW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// DescribeKey (patched) and ListKeyRotations (answered) for `key_id`, whose NON_CURRENT
/// material expires in `days`; `key_model` is DescribeKey's ExpirationModel.
fn aws_answers(key_id: &str, key_arn: &str, days: i64, key_model: &str) -> serde_json::Value {
    let valid_to = epoch(days_from_now(days));
    json!([
        {
            "match": ["TrentService.DescribeKey", key_id],
            "patch": {"KeyMetadata": {
                "Origin": "EXTERNAL",
                "ExpirationModel": key_model,
                "ValidTo": valid_to,
                "CurrentKeyMaterialId": NEW,
            }},
        },
        kms_reply(
            &["TrentService.ListKeyRotations", key_id],
            json!({
                "Rotations": [
                    {
                        "KeyId": key_arn,
                        "KeyMaterialId": OLD,
                        "KeyMaterialDescription": "kms-rotation-guard hsm-object:krg-0123456789abcdef0123456789abcdef",
                        "ImportState": "IMPORTED",
                        "KeyMaterialState": "NON_CURRENT",
                        "ExpirationModel": "KEY_MATERIAL_EXPIRES",
                        "ValidTo": valid_to,
                    },
                    {
                        "KeyId": key_arn,
                        "KeyMaterialId": NEW,
                        "KeyMaterialDescription": "kms-rotation-guard hsm-object:krg-fedcba9876543210fedcba9876543210",
                        "ImportState": "IMPORTED",
                        "KeyMaterialState": "CURRENT",
                        "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
                        "RotationDate": epoch(days_from_now(-10)),
                        "RotationType": "ON_DEMAND",
                    },
                ],
                "Truncated": false,
            }),
        ),
    ])
}

/// A DynamoDB table change event whose table uses `key_arn`.
fn table_event(table: &str, key_arn: &str) -> serde_json::Value {
    let item = json!({
        "configurationItemCaptureTime": chrono::Utc::now().to_rfc3339(),
        "configurationItemStatus": "OK",
        "resourceType": "AWS::DynamoDB::Table",
        "resourceId": table,
        "resourceName": table,
        "awsAccountId": WORKLOAD,
        "awsRegion": REGION,
        "ARN": format!("arn:aws:dynamodb:{REGION}:{WORKLOAD}:table/{table}"),
        "configuration": {"tableName": table, "tableStatus": "ACTIVE",
            "ssedescription": {"status": "ENABLED", "ssetype": "KMS", "kmsmasterKeyArn": key_arn}},
    });
    json!({
        "version": "1.0",
        "invokingEvent": json!({
            "configurationItem": item,
            "notificationCreationTime": chrono::Utc::now().to_rfc3339(),
            "messageType": "ConfigurationItemChangeNotification",
            "recordVersion": "1.3",
        }).to_string(),
        "ruleParameters": "{}",
        "resultToken": "TESTMODE",
        "eventLeftScope": false,
        "configRuleName": "kms-rotation-dynamodb",
        "accountId": WORKLOAD,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_non_current_material_is_named_with_its_reimport_command_and_never_rotated() {
    let moto = Moto::start();
    let (seed_aws, _) = workload(&moto.endpoint).await;
    // Rotated on demand 10 days ago, as the tag and KMS's listing both say.
    let ten_days_ago = ymd(days_from_now(-10));
    let arn = seed::key(&seed_aws, "expiring", OriginType::External, &[("LastRotationDate", &ten_days_ago)]).await;
    let key_id = arn.rsplit('/').next().unwrap().to_string();
    seed::table(&seed_aws, "orders", Some(&arn)).await;

    // The rule: NON_COMPLIANT, naming the material, its date and the command that prevents
    // the outage; the same key 400 days from expiry is COMPLIANT.
    let judge = |days: i64| {
        let (arn, key_id, endpoint) = (arn.clone(), key_id.clone(), moto.endpoint.clone());
        async move {
            let proxy =
                AnsweringProxy::start_at(&endpoint, &aws_answers(&key_id, &arn, days, "KEY_MATERIAL_DOES_NOT_EXPIRE"));
            let (aws, _) = workload(&proxy.endpoint).await;
            let out = handler::handle(&aws, rule::DYNAMODB, table_event("orders", &arn), chrono::Utc::now(), None)
                .await
                .unwrap();
            assert!(proxy.answered(1) >= 1, "the AWS-shaped ListKeyRotations was used");
            out.evaluations.into_iter().next().unwrap()
        }
    };
    let soon = judge(10).await;
    println!("10 days: {} {}", soon.compliance.as_str(), soon.annotation);
    assert_eq!(soon.compliance, Compliance::NonCompliant, "{}", soon.annotation);
    let expires = ymd(days_from_now(10));
    for needed in [OLD, expires.as_str(), "kms-rotation-guard reimport --key", "--key-material-id", "--valid-to"] {
        assert!(soon.annotation.contains(needed), "{needed:?} missing: {}", soon.annotation);
    }
    let later = judge(400).await;
    println!("400 days: {} {}", later.compliance.as_str(), later.annotation);
    assert_eq!(later.compliance, Compliance::Compliant, "{}", later.annotation);

    // The remediation gate, for either key-level model AWS may report: it skips and names
    // the re-import; no rotation call at all (a rotation would leave the old material
    // associated, expiring on the same date, and spend one of 25 on-demand rotations).
    for key_model in ["KEY_MATERIAL_DOES_NOT_EXPIRE", "KEY_MATERIAL_EXPIRES"] {
        let proxy = AnsweringProxy::start_at(&moto.endpoint, &aws_answers(&key_id, &arn, 10, key_model));
        let (aws, counter) = workload(&proxy.endpoint).await;
        let software = SoftwareSource::new_insecure_for_development();
        let rotator = Rotator::new(&aws, &software);
        let params = kms_rotation_guard::params::RuleParams::default();
        let outcome = remediation::rotate_if_needed(
            &aws,
            &rotator,
            &RotationRequest::new(&arn),
            &params,
            "expiry-test",
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
        let Outcome::Skipped(reason) = outcome else { panic!("{key_model}: the gate let an expiring key through") };
        println!("gate ({key_model}): {reason}");
        assert!(reason.contains("reimport") && reason.contains(OLD), "{key_model}: {reason}");
        let writes: u64 =
            ["kms.RotateKeyOnDemand", "kms.GetParametersForImport", "kms.ImportKeyMaterial", "kms.TagResource"]
                .iter()
                .map(|op| counter.get(op))
                .sum();
        assert_eq!(writes, 0, "{key_model}: {:?}", counter.snapshot());
    }
}

/// The fix the verdict names, end to end on LocalStack + SoftHSM: `reimport` of a still
/// imported, expiring material with a later ValidTo. ImportKeyMaterial: "You can also use this
/// operation to set or update the expiration model and expiration date of the imported key
/// material", on a key that is PendingImport or Enabled. The tool re-imports the same material
/// (EXISTING_KEY_MATERIAL, its KeyMaterialId, found by a 16-digit prefix) from the object that
/// holds it, then checks KMS's listing shows the new date. If KMS kept the old date (the
/// ValidTo parameter's text says a change needs DeleteImportedKeyMaterial first), it says so
/// and deletes nothing: deleting is an operator's separate, deliberate step.
///
/// LocalStack gaps: it ignores ValidTo and has no ListKeyRotations, so there the request is
/// asserted and the report says the new date could not be checked; the proxy then answers
/// ListKeyRotations as AWS would, once with the new date and once with the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimport_gives_an_expiring_material_a_later_date_and_checks_that_kms_took_it() {
    use kms_rotation_guard::rotation::Expiration;
    let ls = LocalStack::start();
    let log = CallLog::default();
    let counter = CallCounter::default();
    let aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_interceptor(log.clone());
    let soon = chrono::Utc::now() + chrono::Duration::days(10);
    let later = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 300 * 86_400, 0).unwrap();
    async fn expiring_key(aws: &Aws, alias: &str, valid_to: chrono::DateTime<chrono::Utc>) -> (String, String) {
        let arn = external_key(aws, alias).await;
        let expiring = RotationRequest { valid_to: Some(valid_to), ..request(&arn) };
        let (_, record) = Rotator::new(aws, softhsm()).rotate(&expiring).await.unwrap();
        (arn, record.unwrap().key_material_id.unwrap())
    }
    let extend = |arn: &str, material: &str| ReimportRequest {
        expiry: Some(Expiration::On(later)),
        ..reimport(arn, Some(&material[..16]), false)
    };

    // LocalStack alone: the request is right; the new date cannot be read back there.
    let (arn, material) = expiring_key(&aws, "extend-here", soon).await;
    log.0.lock().unwrap().clear();
    let report = hsm_rotator(&aws).reimport(&extend(&arn, &material)).await.unwrap();
    println!("{report}");
    assert!(report.materials[0].imported && report.materials[0].key_material_id == material, "{report:?}");
    assert_eq!(report.key_state, "Enabled");
    assert!(report.note.as_deref().is_some_and(|n| n.contains("not checked")), "{report:?}");
    let calls = log.0.lock().unwrap().clone();
    let (_, _, body) = calls.iter().find(|(op, _, _)| op == "ImportKeyMaterial").unwrap();
    assert_eq!(body["ImportType"], "EXISTING_KEY_MATERIAL", "{body}");
    assert_eq!(body["KeyMaterialId"], material.as_str(), "{body}");
    assert_eq!(body["ExpirationModel"], "KEY_MATERIAL_EXPIRES", "{body}");
    assert_eq!(body["ValidTo"].as_f64().map(|t| t as i64), Some(later.timestamp()), "{body}");
    assert!(body["KeyMaterialDescription"].as_str().unwrap().contains("hsm-object:krg-"), "{body}");
    assert!(calls.iter().all(|(op, _, _)| op != "DeleteImportedKeyMaterial"));

    // As AWS lists the material afterwards: with the new date, and (the other reading of the
    // reference) with the old one.
    for (alias, listed, expect_ok) in [("extend-aws", later, true), ("extend-kept", soon, false)] {
        let (arn, material) = expiring_key(&aws, alias, soon).await;
        let key_id = arn.rsplit('/').next().unwrap();
        let proxy = AnsweringProxy::start_at(
            &ls.endpoint,
            &json!([kms_reply(
                &["TrentService.ListKeyRotations", key_id],
                json!({"Rotations": [{
                    "KeyId": arn, "KeyMaterialId": material, "ImportState": "IMPORTED", "KeyMaterialState": "CURRENT",
                    "ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": epoch(listed),
                }], "Truncated": false}),
            )]),
        );
        let through = Aws::new(sdk_config(&proxy.endpoint, static_creds()).await).with_counter(counter.clone());
        counter.reset();
        let result = hsm_rotator(&through).reimport(&extend(&arn, &material)).await;
        println!("{alias}: {result:?}");
        assert_eq!(counter.get("kms.DeleteImportedKeyMaterial"), 0);
        if expect_ok {
            let report = result.unwrap();
            assert!(report.note.is_none() && report.materials[0].imported, "{report:?}");
        } else {
            let err = result.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, RotationError::Verification(_)), "{text}");
            assert!(
                text.contains("kept") && text.contains("DeleteImportedKeyMaterial") && text.contains(&material),
                "{text}"
            );
        }
    }
}
