//! Rotation end to end: key material generated and wrapped in SoftHSM2 (PKCS#11), imported
//! into LocalStack's KMS (the only emulator with BYOK import), verified and recorded.
//! moto has no GetParametersForImport/ImportKeyMaterial, hence LocalStack here.

mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::OriginType;
use chrono::Utc;
use common::*;
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::handler;
use kms_rotation_guard::key::{Home, KeyRef};
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::resource::{Protection, Resource, ResourceType};
use kms_rotation_guard::rotation::hsm::{KeyMaterialSource, WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{
    Progress, RotationError, RotationRequest, Rotator, Step, Strategy, HSM_OBJECT_TAG, PENDING_TAG,
};

/// LocalStack's default account.
const ACCOUNT: &str = "000000000000";

/// LocalStack's ImportKeyMaterial rejects RSA_AES_KEY_WRAP_SHA_1 ("Unsupported padding"),
/// which AWS accepts and SoftHSM can compose. The product would choose it; these tests pin
/// the OAEP variant instead, as an operator can (--wrapping-algorithm).
const LOCALSTACK_ALGORITHM: Option<WrappingAlgorithm> = Some(WrappingAlgorithm::RsaesOaepSha1);

fn request(key: impl Into<String>) -> RotationRequest {
    RotationRequest {
        wrapping_algorithm: LOCALSTACK_ALGORITHM,
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(key)
    }
}

async fn kms_at(ls: &LocalStack) -> (Aws, CallCounter) {
    let counter = CallCounter::default();
    (Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_counter(counter.clone()), counter)
}

/// An EXTERNAL key with an alias, its first material imported through the rotation module.
async fn byok_key(aws: &Aws, alias: &str) -> String {
    let id =
        aws.kms().create_key().origin(OriginType::External).description(format!("{alias} test")).send().await.unwrap();
    let id = id.key_metadata().unwrap().key_id().to_string();
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&id).send().await.unwrap();
    let (plan, record) = Rotator::new(aws, softhsm()).rotate(&request(&id)).await.unwrap();
    assert_eq!(plan.progress, Progress::FirstImport);
    assert!(record.is_some());
    id
}

async fn describe(aws: &Aws, key: &str) -> aws_sdk_kms::types::KeyMetadata {
    aws.kms().describe_key().key_id(key).send().await.unwrap().key_metadata().unwrap().clone()
}

async fn tags(aws: &Aws, key: &str) -> std::collections::BTreeMap<String, String> {
    let out = aws.kms().list_resource_tags().key_id(key).send().await.unwrap();
    out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect()
}

async fn encrypt(aws: &Aws, key: &str, text: &str) -> Blob {
    aws.kms()
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(text.as_bytes()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone()
}

async fn decrypt(aws: &Aws, ciphertext: &Blob) -> String {
    let out = aws.kms().decrypt().ciphertext_blob(ciphertext.clone()).send().await.unwrap();
    String::from_utf8(out.plaintext().unwrap().as_ref().to_vec()).unwrap()
}

/// The evaluator's verdict for a bucket encrypted with `alias`, read from the same KMS.
async fn verdict(aws: &Aws, alias: &str) -> String {
    let bucket = Resource {
        resource_type: ResourceType::S3Bucket,
        resource_id: "invoices".into(),
        name: "invoices".into(),
        home: Home::new(REGION, ACCOUNT),
        protection: Protection::Kms(KeyRef::parse(&format!("alias/{alias}")).unwrap()),
    };
    let a = handler::assess(aws, &RuleParams::default(), ACCOUNT, vec![bucket], Utc::now()).await.unwrap();
    format!("{} {}", a[0].verdict.compliance.as_str(), a[0].verdict.annotation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_rotation_through_softhsm_keeps_old_ciphertext_and_makes_the_key_compliant() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let id = byok_key(&aws, "prod-s3").await;
    // Make the key look 400 days old, as an auditor would find it.
    let old = (Utc::now() - chrono::Duration::days(400)).format("%Y-%m-%d").to_string();
    aws.kms()
        .tag_resource()
        .key_id(&id)
        .tags(aws_sdk_kms::types::Tag::builder().tag_key("LastRotationDate").tag_value(&old).build().unwrap())
        .send()
        .await
        .unwrap();
    aws.kms().untag_resource().key_id(&id).tag_keys("LastRotationKeyMaterialId").send().await.unwrap();
    assert!(verdict(&aws, "prod-s3").await.starts_with("NON_COMPLIANT"), "{}", verdict(&aws, "prod-s3").await);

    let before = describe(&aws, &id).await;
    let ciphertext = encrypt(&aws, &id, "encrypted before the rotation").await;
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    counter.reset();
    let (plan, record) = Rotator::new(&aws, softhsm())
        .on_step(move |s, _| seen.lock().unwrap().push(s))
        .rotate(&request("alias/prod-s3"))
        .await
        .unwrap();
    let record = record.unwrap();
    assert_eq!(plan.progress, Progress::Fresh);
    assert_eq!(record.wrapping_algorithm, "RSAES_OAEP_SHA_1");
    // The record names the HSM object that keeps the new material: named at creation, and
    // linked to the material by KMS (its KeyMaterialDescription) and the key's tags.
    let held = record.hsm_object.as_deref().expect("the HSM keeps the material");
    assert!(held.contains("CKA_ID=krg-") && held.contains(&id), "{held}");
    assert_eq!(
        *steps.lock().unwrap(),
        vec![
            Step::Plan,
            Step::KeepMaterial,
            Step::GetParametersForImport,
            Step::GenerateAndWrap,
            Step::ImportKeyMaterial,
            Step::Rotate,
            Step::Verify,
            Step::Record
        ]
    );

    let after = describe(&aws, &id).await;
    assert_eq!(after.key_id(), id, "in-place keeps the key");
    assert_ne!(after.current_key_material_id(), before.current_key_material_id(), "new material is current");
    assert_eq!(decrypt(&aws, &ciphertext).await, "encrypted before the rotation");
    let t = tags(&aws, &id).await;
    assert_eq!(t.get("LastRotationKeyMaterialId").map(String::as_str), after.current_key_material_id());
    assert!(t["LastRotationDate"].starts_with(&Utc::now().format("%Y-%m-%d").to_string()));
    assert!(!t.contains_key(PENDING_TAG));
    // Nothing destructive was ever called.
    for op in ["kms.DeleteImportedKeyMaterial", "kms.ScheduleKeyDeletion", "kms.DisableKey", "kms.DeleteAlias"] {
        assert_eq!(counter.get(op), 0, "{op}");
    }
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 1);
    assert!(verdict(&aws, "prod-s3").await.starts_with("COMPLIANT"), "{}", verdict(&aws, "prod-s3").await);

    // Last step: ask Config to re-evaluate (moto has no StartConfigRulesEvaluation; an
    // AWS-shaped endpoint records the call).
    let (config, seen) = fake_config(vec![]);
    let aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_service_endpoint("config", config);
    let req = RotationRequest { reevaluate: vec!["kms-rotation-s3".into()], ..request("alias/prod-s3") };
    Rotator::new(&aws, softhsm()).rotate(&req).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "startconfigrulesevaluation");
    assert_eq!(seen[0].1["ConfigRuleNames"], serde_json::json!(["kms-rotation-s3"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_swap_moves_the_alias_and_leaves_the_old_key_usable() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let old = byok_key(&aws, "prod-rds").await;
    aws.kms()
        .tag_resource()
        .key_id(&old)
        .tags(aws_sdk_kms::types::Tag::builder().tag_key("team").tag_value("payments").build().unwrap())
        .send()
        .await
        .unwrap();
    let ciphertext = encrypt(&aws, "alias/prod-rds", "written through the alias").await;
    counter.reset();
    let req = RotationRequest { strategy: Strategy::AliasSwap, ..request("alias/prod-rds") };
    let (_, record) = Rotator::new(&aws, softhsm()).rotate(&req).await.unwrap();
    let record = record.unwrap();
    let new = describe(&aws, "alias/prod-rds").await;
    assert_ne!(new.key_id(), old, "the alias points at the successor");
    assert_eq!(record.current_key_arn, new.arn().unwrap());
    assert_eq!(describe(&aws, &old).await.key_state().unwrap().as_str(), "Enabled", "the old key stays usable");
    assert_eq!(decrypt(&aws, &ciphertext).await, "written through the alias");
    let t = tags(&aws, new.key_id()).await;
    assert_eq!(t.get("team").map(String::as_str), Some("payments"), "tags are copied");
    assert!(t.contains_key("LastRotationDate"));
    assert_eq!(counter.get("kms.CreateKey"), 1);
    for op in ["kms.ScheduleKeyDeletion", "kms.DisableKey", "kms.DeleteAlias", "kms.DeleteImportedKeyMaterial"] {
        assert_eq!(counter.get(op), 0, "{op}");
    }
    assert!(verdict(&aws, "prod-rds").await.starts_with("COMPLIANT"));
}

/// Stopped after each step, a re-run completes, with one on-demand rotation (in-place) or
/// one successor key (alias-swap) in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotation_completes_on_the_next_run() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    for (strategy, steps) in [
        (
            Strategy::InPlace,
            vec![
                Step::KeepMaterial,
                Step::GetParametersForImport,
                Step::GenerateAndWrap,
                Step::ImportKeyMaterial,
                Step::Rotate,
                Step::Verify,
            ],
        ),
        (
            Strategy::AliasSwap,
            vec![
                Step::CreateSuccessor,
                Step::KeepMaterial,
                Step::GetParametersForImport,
                Step::ImportKeyMaterial,
                Step::Rotate,
                Step::Verify,
            ],
        ),
    ] {
        for stop in steps {
            let alias = format!("resume-{strategy}-{stop:?}").to_lowercase();
            let key = byok_key(&aws, &alias).await;
            let ciphertext = encrypt(&aws, &key, "old").await;
            let material_before = describe(&aws, &key).await.current_key_material_id().map(str::to_string);
            counter.reset();
            let req = RotationRequest { strategy, ..request(format!("alias/{alias}")) };
            let err = Rotator::new(&aws, softhsm())
                .rotate(&RotationRequest { stop_after: Some(stop), ..req.clone() })
                .await
                .unwrap_err();
            assert!(matches!(err, RotationError::Interrupted(s) if s == stop), "{err}");
            // Tags claiming the rotation are only written after verification.
            let t = tags(&aws, describe(&aws, &format!("alias/{alias}")).await.key_id()).await;
            // No tag may claim material other than the verified old one (absent on a new key).
            let claimed = t.get("LastRotationKeyMaterialId").map(String::as_str);
            assert!(
                claimed.is_none() || claimed == material_before.as_deref(),
                "{strategy} {stop:?}: tags written early: {t:?}"
            );
            let (plan, record) = Rotator::new(&aws, softhsm()).rotate(&req).await.unwrap();
            assert!(
                record.unwrap().resumed || matches!(plan.progress, Progress::Fresh),
                "{strategy} {stop:?}: {:?}",
                plan.progress
            );
            let now = describe(&aws, &format!("alias/{alias}")).await;
            assert_eq!(decrypt(&aws, &ciphertext).await, "old", "{strategy} {stop:?}");
            match strategy {
                Strategy::InPlace => {
                    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 1, "{stop:?}: {:?}", counter.snapshot());
                    assert_eq!(counter.get("kms.ImportKeyMaterial"), 1, "{stop:?}: {:?}", counter.snapshot());
                    assert_ne!(now.current_key_material_id().map(str::to_string), material_before);
                }
                Strategy::AliasSwap => {
                    assert_eq!(counter.get("kms.CreateKey"), 1, "{stop:?}: {:?}", counter.snapshot());
                    assert_ne!(now.key_id(), key);
                }
            }
            let t = tags(&aws, now.key_id()).await;
            assert!(t.contains_key("LastRotationDate") && !t.contains_key(PENDING_TAG), "{strategy} {stop:?}: {t:?}");
            // Custody: the HSM holds the new material, linked to KMS's id, and no orphan: every
            // object of the key is linked to a material.
            let report = Rotator::new(&aws, softhsm()).materials_report(now.arn().unwrap()).await.unwrap();
            let current = now.current_key_material_id().unwrap();
            let listed = report.materials.iter().find(|m| m.key_material_id == current).unwrap();
            assert!(listed.held, "{strategy} {stop:?}: {report:?}");
            // One object per material: the stopped run's object was imported, not a second one.
            // (LocalStack lists no NON_CURRENT material, so objects are counted, not linked.)
            let objects = softhsm().kept_materials(now.arn().unwrap()).unwrap().len();
            let materials = if strategy == Strategy::InPlace { 2 } else { 1 };
            assert_eq!(objects, materials, "{strategy} {stop:?}: {report:?}");
            let object = listed.hsm_object.as_deref().unwrap().rsplit("CKA_ID=").next().unwrap();
            assert!(t[HSM_OBJECT_TAG].ends_with(&format!("CKA_ID={object}")), "{strategy} {stop:?}: {t:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_without_changing_anything() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    byok_key(&aws, "dev-s3").await;
    counter.reset();
    // Unpinned: SoftHSM 2.6.1 has only SHA-1 OAEP, so the strongest it offers is the
    // composed RSA_AES_KEY_WRAP_SHA_1.
    let req = RotationRequest { dry_run: true, ..RotationRequest::new("alias/dev-s3") };
    let (plan, record) = Rotator::new(&aws, softhsm()).rotate(&req).await.unwrap();
    assert!(record.is_none());
    let text = plan.to_string();
    for want in
        ["key:", "strategy:   in-place", "RSA_AES_KEY_WRAP_SHA_1", "RSA_4096", "mechanism:  CKM_AES_KEY_GEN", "quota:"]
    {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    let calls = counter.snapshot();
    assert!(
        calls
            .keys()
            .all(|op| ["kms.DescribeKey", "kms.ListResourceTags", "kms.ListKeyRotations"].contains(&op.as_str())),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_must_not_be_rotated_are_refused_with_a_reason() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let native = aws.kms().create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    let doomed = byok_key(&aws, "doomed").await;
    aws.kms().schedule_key_deletion().key_id(&doomed).pending_window_in_days(7).send().await.unwrap();
    counter.reset();
    for (key, why) in [
        (native.as_str(), "only imported (EXTERNAL)"),
        (doomed.as_str(), "pending deletion"),
        ("not a key", "not a KMS key reference"),
    ] {
        let err = Rotator::new(&aws, softhsm()).rotate(&request(key)).await.unwrap_err();
        assert!(matches!(err, RotationError::Refused(_)) && err.to_string().contains(why), "{err}");
    }
    assert_eq!(counter.get("kms.GetParametersForImport"), 0);
    let _ = softhsm().name();
}
