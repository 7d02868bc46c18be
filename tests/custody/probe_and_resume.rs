//! The verification probe's encryption context, and a first import resumed after a stop.

use super::*;

/// Every verification Encrypt and Decrypt carries the probe encryption context, the only one
/// the rotation role may use them under (contract: PROBE_CONTEXT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_encrypt_and_decrypt_uses_the_probe_context() {
    let ls = LocalStack::start();
    let log = CallLog::default();
    let aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_interceptor(log.clone());
    let arn = external_key(&aws, "probe").await;
    Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
    let swap =
        RotationRequest { strategy: kms_rotation_guard::rotation::Strategy::AliasSwap, ..request("alias/probe") };
    for r in [request(&arn), swap] {
        Rotator::new(&aws, softhsm()).rotate(&r).await.unwrap();
    }
    let (k, v) = kms_rotation_guard::rotation::PROBE_CONTEXT;
    let calls = log.0.lock().unwrap();
    let probes: Vec<_> = calls.iter().filter(|(op, _, _)| op == "Encrypt" || op == "Decrypt").collect();
    assert!(probes.len() >= 6, "{probes:?}");
    for (op, _, body) in probes {
        assert_eq!(body["EncryptionContext"], serde_json::json!({ k: v }), "{op}: {body}");
    }
}

/// A first import stopped after KeepMaterial or after ImportKeyMaterial completes on the next
/// run with the same object (named when it was created, never renamed), and KMS's material is
/// linked to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_import_stopped_before_naming_completes_and_names_the_object() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    for stop in
        [kms_rotation_guard::rotation::Step::KeepMaterial, kms_rotation_guard::rotation::Step::ImportKeyMaterial]
    {
        let arn = external_key(&aws, &format!("first-{stop:?}").to_lowercase()).await;
        let stopped = RotationRequest { stop_after: Some(stop), ..request(&arn) };
        let err = Rotator::new(&aws, softhsm()).rotate(&stopped).await.unwrap_err();
        assert!(matches!(err, RotationError::Interrupted(_)), "{err}");
        let pending = softhsm().kept_materials(&arn).unwrap();
        assert_eq!(pending.len(), 1, "{stop:?}: {pending:?}");
        assert!(pending[0].key_material_id.is_none() && pending[0].object_id.starts_with("krg-"));
        let (_, record) = Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
        let record = record.unwrap();
        let material = record.key_material_id.unwrap();
        let kept = softhsm().kept_materials(&arn).unwrap();
        assert_eq!(kept.len(), 1, "{stop:?}: one object, no orphan: {kept:?}");
        assert_eq!(kept[0].object_id, pending[0].object_id, "{stop:?}: the object the stopped run made");
        assert_eq!(record.hsm_object.as_deref(), Some(kept[0].to_string().as_str()), "{stop:?}");
        let report = hsm_rotator(&aws).materials_report(&arn).await.unwrap();
        assert!(report.materials[0].key_material_id == material && report.materials[0].held, "{report:?}");
        assert_eq!(describe(&aws, &arn).await.current_key_material_id(), Some(material.as_str()));
    }
}
