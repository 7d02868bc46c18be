//! Multi-Region keys: the same material in every replica before the primary rotates.

use super::*;

/// Multi-Region: NEW_KEY_MATERIAL into the primary, the same material as EXISTING_KEY_MATERIAL
/// into the replica (in its Region), and only then RotateKeyOnDemand on the primary.
///
/// LocalStack gaps (docs/emulators.md): a replica of an EXTERNAL key starts Enabled with the primary's
/// material (AWS: PendingImport), and RotateKeyOnDemand on the primary does not move the
/// replica to the new material. So this test asserts the calls and their order, not the
/// replica's state after the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_region_keys_get_the_same_material_in_every_replica_before_the_primary_rotates() {
    let ls = LocalStack::start();
    let log = CallLog::default();
    let aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_interceptor(log.clone());
    let primary = imported_multi_region_key(&aws).await;
    let replica_arn = replicate_to_us_east_1(&aws, &primary).await;

    // A replica is not rotated on its own, and alias-swap cannot move a multi-Region key.
    let us = in_us_east_1(&ls).await;
    let err = Rotator::new(&us, softhsm()).rotate(&request(&replica_arn)).await.unwrap_err();
    assert!(err.to_string().contains("multi-Region replica"), "{err}");
    let swap = RotationRequest { strategy: kms_rotation_guard::rotation::Strategy::AliasSwap, ..request(&primary) };
    assert!(Rotator::new(&aws, softhsm()).rotate(&swap).await.is_err());

    log.0.lock().unwrap().clear();
    let (plan, record) = Rotator::new(&aws, softhsm()).rotate(&request(&primary)).await.unwrap();
    assert_eq!(plan.replicas.len(), 1);
    let record = record.unwrap();
    assert_eq!(record.replicas, vec![replica_arn.clone()]);
    let material = record.key_material_id.unwrap();
    let object = record.hsm_object.unwrap();
    let calls: Vec<_> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, _, _)| {
            ["ImportKeyMaterial", "RotateKeyOnDemand", "GetParametersForImport"].contains(&op.as_str())
        })
        .map(|(op, region, body)| {
            format!("{op} {region} {}", body["ImportType"].as_str().unwrap_or("")).trim().to_string()
        })
        .collect();
    assert_eq!(
        calls,
        [
            "GetParametersForImport eu-west-1",
            "ImportKeyMaterial eu-west-1 NEW_KEY_MATERIAL",
            "GetParametersForImport us-east-1",
            "ImportKeyMaterial us-east-1 EXISTING_KEY_MATERIAL",
            "RotateKeyOnDemand eu-west-1",
        ]
    );
    assert_eq!(describe(&aws, &primary).await.current_key_material_id(), Some(material.as_str()));
    // The replica's bookkeeping tag is gone once the rotation is recorded.
    let us = in_us_east_1(&ls).await;
    let replica_tags = us.kms().list_resource_tags().key_id(&replica_arn).send().await.unwrap();
    assert!(replica_tags.tags().iter().all(|t| t.tag_key() != kms_rotation_guard::rotation::PENDING_TAG));
    // The replica got exactly this material, from the one kept object: both imports named it.
    let described: Vec<_> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, _, _)| op == "ImportKeyMaterial")
        .map(|(_, _, body)| body["KeyMaterialDescription"].as_str().unwrap_or_default().to_string())
        .collect();
    let object_id = object.rsplit("CKA_ID=").next().unwrap();
    assert!(described.iter().all(|d| d.ends_with(&format!("hsm-object:{object_id}"))), "{described:?} {object}");
    let on_replica = softhsm().kept_materials(&replica_arn).unwrap();
    assert!(on_replica.iter().any(|k| k.object_id == object_id && k.key_arn == primary), "{on_replica:?}");
}

/// A replica that does not take the material stops the rotation before RotateKeyOnDemand:
/// the primary keeps serving its current material, and a re-run resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_refuses_the_material_blocks_the_rotation_and_nothing_is_half_rotated() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let primary = imported_multi_region_key(&aws).await;
    let before = describe(&aws, &primary).await.current_key_material_id().unwrap().to_string();
    let replica_arn = replicate_to_us_east_1(&aws, &primary).await;
    // Make the replica refuse: LocalStack then answers KMSInvalidStateException ("another key
    // material is pending rotation"), as a replica in a wrong state would on AWS.
    let us = in_us_east_1(&ls).await;
    let params = us
        .kms()
        .get_parameters_for_import()
        .key_id(&replica_arn)
        .wrapping_algorithm(aws_sdk_kms::types::AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap();
    let stray = SoftwareSource::new_insecure_for_development()
        .generate_and_wrap(params.public_key().unwrap().as_ref(), WrappingKeySpec::Rsa2048, ALGORITHM)
        .unwrap();
    us.kms()
        .import_key_material()
        .key_id(&replica_arn)
        .import_token(params.import_token().unwrap().clone())
        .encrypted_key_material(aws_sdk_kms::primitives::Blob::new(stray.into_bytes()))
        .import_type(aws_sdk_kms::types::ImportType::NewKeyMaterial)
        .expiration_model(aws_sdk_kms::types::ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .unwrap();

    counter.reset();
    let err = Rotator::new(&aws, softhsm()).rotate(&request(&primary)).await.unwrap_err();
    assert!(matches!(err, RotationError::Replica { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&replica_arn) && msg.contains("primary was not rotated"), "{msg}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 0);
    assert_eq!(describe(&aws, &primary).await.current_key_material_id(), Some(before.as_str()));
}

/// Stopped right after the replicas took the material, a re-run completes with one
/// RotateKeyOnDemand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_region_rotation_stopped_after_the_replicas_completes_on_the_next_run() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let primary = imported_multi_region_key(&aws).await;
    replicate_to_us_east_1(&aws, &primary).await;
    counter.reset();
    let stopped = RotationRequest {
        stop_after: Some(kms_rotation_guard::rotation::Step::ImportIntoReplicas),
        ..request(&primary)
    };
    let err = Rotator::new(&aws, softhsm()).rotate(&stopped).await.unwrap_err();
    assert!(matches!(err, RotationError::Interrupted(_)), "{err}");
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 0);
    let (plan, record) = Rotator::new(&aws, softhsm()).rotate(&request(&primary)).await.unwrap();
    assert!(matches!(plan.progress, Progress::Imported { .. }), "{:?}", plan.progress);
    let material = record.unwrap().key_material_id.unwrap();
    assert_eq!(counter.get("kms.RotateKeyOnDemand"), 1);
    assert_eq!(describe(&aws, &primary).await.current_key_material_id(), Some(material.as_str()));
}

/// KMS does not synchronise tags to replicas (ReplicateKey: "Tags are not a shared property of
/// multi-Region keys"), and the rule in a replica's Region reads the replica's tags. After a
/// rotation every replica carries the same record, so an evaluation in us-east-1 judges the
/// replica COMPLIANT. (The replica starts with a 400-day-old record, as after a year of
/// rotations that only ever tagged the primary.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_gets_the_rotation_record_and_is_compliant_in_its_own_region() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let primary = imported_multi_region_key(&aws).await;
    let replica_arn = replicate_to_us_east_1(&aws, &primary).await;
    let us = in_us_east_1(&ls).await;
    let stale = ymd(days_from_now(-400));
    let tag = |k: &str, v: &str| aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build().unwrap();
    us.kms().tag_resource().key_id(&replica_arn).tags(tag("LastRotationDate", &stale)).send().await.unwrap();

    let before = evaluate_in_us_east_1(&in_us_east_1(&ls).await, &replica_arn).await;
    assert_eq!(before.compliance, kms_rotation_guard::verdict::Compliance::NonCompliant, "{}", before.annotation);

    let (_, record) = Rotator::new(&aws, softhsm()).rotate(&request(&primary)).await.unwrap();
    let material = record.unwrap().key_material_id.unwrap();
    let tags_of = |aws: Aws, arn: String| async move {
        let out = aws.kms().list_resource_tags().key_id(&arn).send().await.unwrap();
        out.tags()
            .iter()
            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let primary_tags = tags_of(kms_at(&ls).await.0, primary.clone()).await;
    let replica_tags = tags_of(in_us_east_1(&ls).await, replica_arn.clone()).await;
    for t in
        ["LastRotationDate", kms_rotation_guard::rotation::MATERIAL_TAG, kms_rotation_guard::rotation::HSM_OBJECT_TAG]
    {
        assert!(primary_tags.contains_key(t), "primary lacks {t}: {primary_tags:?}");
        assert_eq!(replica_tags.get(t), primary_tags.get(t), "{t}: {replica_tags:?}");
    }
    assert_eq!(replica_tags.get(kms_rotation_guard::rotation::MATERIAL_TAG), Some(&material));
    assert!(!replica_tags.contains_key(kms_rotation_guard::rotation::PENDING_TAG), "{replica_tags:?}");
    // LocalStack gap: RotateKeyOnDemand on the primary does not move the replica to the new
    // material (AWS does: related multi-Region keys share their material). The proxy gives the
    // replica's DescribeKey AWS's answer, so the verdict's material-id check sees what AWS shows.
    let replica_id = replica_arn.rsplit('/').next().unwrap();
    let proxy = common::fault_proxy::AnsweringProxy::start_at(
        &ls.endpoint,
        &serde_json::json!([{
            "match": ["TrentService.DescribeKey", "us-east-1", replica_id],
            "patch": {"KeyMetadata": {"CurrentKeyMaterialId": material}},
        }]),
    );
    let through_proxy = Aws::new(
        sdk_config(&proxy.endpoint, static_creds())
            .await
            .to_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build(),
    );
    let after = evaluate_in_us_east_1(&through_proxy, &replica_arn).await;
    assert!(proxy.answered(0) >= 1);
    println!("us-east-1 after the rotation: {} {}", after.compliance.as_str(), after.annotation);
    assert_eq!(after.compliance, kms_rotation_guard::verdict::Compliance::Compliant, "{}", after.annotation);
}

/// On a multi-Region primary, new material is PENDING_MULTI_REGION_IMPORT_AND_ROTATION until
/// every replica has it (RotationsListEntry). A rotation stopped right after ImportKeyMaterial,
/// before any tag recorded it, resumes from KMS's listing: it imports that material into the
/// replica and rotates, and imports nothing new into the primary. LocalStack has no
/// ListKeyRotations: the proxy answers it as AWS does, with the material's description naming
/// its HSM object (the only link left once the tags are gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_with_material_pending_multi_region_import_resumes_without_a_second_import() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let primary = imported_multi_region_key(&aws).await;
    let replica_arn = replicate_to_us_east_1(&aws, &primary).await;
    let first = describe(&aws, &primary).await.current_key_material_id().unwrap().to_string();
    let stopped = RotationRequest {
        stop_after: Some(kms_rotation_guard::rotation::Step::ImportKeyMaterial),
        ..request(&primary)
    };
    let err = Rotator::new(&aws, softhsm()).rotate(&stopped).await.unwrap_err();
    assert!(matches!(err, RotationError::Interrupted(_)), "{err}");
    // As if the run had died between ImportKeyMaterial and the tag that records it.
    let tags = aws.kms().list_resource_tags().key_id(&primary).send().await.unwrap();
    let pending = tags.tags().iter().find(|t| t.tag_key() == kms_rotation_guard::rotation::PENDING_TAG).unwrap();
    let (material, object) = pending.tag_value().split_once(" hsm-object:").unwrap();
    let (material, object) = (material.to_string(), object.to_string());
    aws.kms()
        .untag_resource()
        .key_id(&primary)
        .tag_keys(kms_rotation_guard::rotation::PENDING_TAG)
        .send()
        .await
        .unwrap();

    let key_id = primary.rsplit('/').next().unwrap();
    let proxy = common::fault_proxy::AnsweringProxy::start_at(
        &ls.endpoint,
        &serde_json::json!([common::fault_proxy::kms_reply(
            &["TrentService.ListKeyRotations", &format!("\"KeyId\":\"{key_id}\"")],
            serde_json::json!({"Rotations": [
                {"KeyId": primary, "KeyMaterialId": first, "ImportState": "IMPORTED", "KeyMaterialState": "CURRENT",
                 "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"},
                {"KeyId": primary, "KeyMaterialId": material, "ImportState": "IMPORTED",
                 "KeyMaterialState": "PENDING_MULTI_REGION_IMPORT_AND_ROTATION",
                 "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
                 "KeyMaterialDescription": format!("kms-rotation-guard hsm-object:{object}")},
            ], "Truncated": false}),
        )]),
    );
    let log = CallLog::default();
    let through = Aws::new(sdk_config(&proxy.endpoint, static_creds()).await).with_interceptor(log.clone());
    let (plan, record) = Rotator::new(&through, softhsm()).rotate(&request(&primary)).await.unwrap();
    assert!(proxy.answered(0) >= 1);
    assert_eq!(plan.progress, Progress::Imported { material_id: material.clone() });
    let imports: Vec<_> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, _, _)| op == "ImportKeyMaterial")
        .map(|(_, region, body)| {
            (region.clone(), body["ImportType"].as_str().unwrap_or("").to_string(), body["KeyMaterialId"].clone())
        })
        .collect();
    assert_eq!(
        imports,
        [("us-east-1".to_string(), "EXISTING_KEY_MATERIAL".to_string(), serde_json::Value::from(material.clone()))],
        "nothing new into the primary; the pending material into the replica"
    );
    assert_eq!(record.unwrap().key_material_id.as_deref(), Some(material.as_str()));
    assert_eq!(describe(&aws, &primary).await.current_key_material_id(), Some(material.as_str()));
    let _ = replica_arn;
}

/// The rule's verdict on `replica_arn`, judged in us-east-1 (LocalStack's default account).
async fn evaluate_in_us_east_1(us: &Aws, replica_arn: &str) -> kms_rotation_guard::verdict::Verdict {
    const ACCOUNT: &str = "000000000000";
    let params = kms_rotation_guard::params::RuleParams::default();
    let reader = kms_rotation_guard::key::lookup::KeyReader::new(us, &params, ACCOUNT);
    let key = kms_rotation_guard::key::KeyRef::parse(replica_arn).unwrap();
    let lookup = reader.look_up(&key, &kms_rotation_guard::key::Home::new("us-east-1", ACCOUNT)).await.unwrap();
    let protection = kms_rotation_guard::resource::Protection::Kms(key);
    kms_rotation_guard::verdict::decide(&protection, Some(&lookup), &params, chrono::Utc::now())
}

/// A multi-Region EXTERNAL primary key with its first material imported from SoftHSM.
async fn imported_multi_region_key(aws: &Aws) -> String {
    let k = aws.kms().create_key().origin(OriginType::External).multi_region(true).send().await.unwrap();
    let primary = k.key_metadata().unwrap().arn().unwrap().to_string();
    Rotator::new(aws, softhsm()).rotate(&request(&primary)).await.unwrap();
    primary
}

/// Replicates `primary` to us-east-1; returns the replica's ARN.
async fn replicate_to_us_east_1(aws: &Aws, primary: &str) -> String {
    let replica = aws.kms().replicate_key().key_id(primary).replica_region("us-east-1").send().await.unwrap();
    replica.replica_key_metadata().unwrap().arn().unwrap().to_string()
}

/// The same LocalStack, as seen from us-east-1 (where the replicas live).
async fn in_us_east_1(ls: &LocalStack) -> Aws {
    Aws::new(
        sdk_config(&ls.endpoint, static_creds())
            .await
            .to_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build(),
    )
}
