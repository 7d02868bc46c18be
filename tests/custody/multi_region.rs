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
    // The replica got exactly this material, from the one kept object.
    assert_eq!(softhsm().find_kept(&replica_arn, &material).unwrap().unwrap().key_arn, primary);
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
