//! Naming kept material on a token that refuses attribute changes, as AWS CloudHSM does for
//! CKA_ID (Client SDK 5, "Modifying attributes"): every test token here creates its kept
//! objects with CKA_MODIFIABLE=false, so SoftHSM answers CKR_ATTRIBUTE_READ_ONLY to any
//! change. The object is named at creation; KMS carries the link in KeyMaterialDescription.

use super::*;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use kms_rotation_guard::rotation::hsm::HsmError;

/// A logged-in session of this process on the test token (shares the source's login).
fn token_session() -> cryptoki::session::Session {
    let _ = softhsm();
    let ctx = cryptoki::context::Pkcs11::new(SOFTHSM_MODULE).unwrap();
    match ctx.initialize(cryptoki::context::CInitializeArgs::new(cryptoki::context::CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "rotation-tests")
        .unwrap();
    ctx.open_rw_session(slot).unwrap()
}

/// The kept objects of `key_arn`: (CKA_ID, CKA_MODIFIABLE).
fn objects_of(key_arn: &str) -> Vec<(String, bool)> {
    let session = token_session();
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(key_arn.as_bytes().to_vec())])
        .unwrap();
    handles
        .into_iter()
        .map(|h| {
            let attrs = session.get_attributes(h, &[AttributeType::Id, AttributeType::Modifiable]).unwrap();
            let mut out = (String::new(), true);
            for a in attrs {
                match a {
                    Attribute::Id(i) => out.0 = String::from_utf8_lossy(&i).into_owned(),
                    Attribute::Modifiable(m) => out.1 = m,
                    _ => {}
                }
            }
            out
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_objects_are_named_when_created_and_the_token_refuses_any_change() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let arn = external_key(&aws, "named").await;
    let (_, record) = Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
    let record = record.unwrap();
    let objects = objects_of(&arn);
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (id, modifiable) = &objects[0];
    assert!(id.starts_with("krg-") && !modifiable, "{objects:?}");
    assert!(record.hsm_object.as_deref().unwrap().contains(id.as_str()), "{record:?}");
    // The token refuses to change it, as CloudHSM refuses CKA_ID.
    let session = token_session();
    let handle = session.find_objects(&[Attribute::Label(arn.as_bytes().to_vec())]).unwrap()[0];
    let err = session.update_attributes(handle, &[Attribute::Id(b"renamed".to_vec())]).unwrap_err();
    assert!(
        matches!(
            err,
            cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::ActionProhibited | cryptoki::error::RvError::AttributeReadOnly,
                _
            )
        ),
        "{err:?}"
    );
    // The material is still found by its KMS id (the key's tags link it on LocalStack).
    let report = hsm_rotator(&aws).materials_report(&arn).await.unwrap();
    assert!(report.materials[0].held && report.materials[0].hsm_object.as_deref().unwrap().contains(id.as_str()));
}

/// Two rotations of one key at once (an operator's `rotate --force` and the Lambda, without
/// the lock between them), both past KeepMaterial before either imports. Each run imports
/// only the object it created, under its own description, so no material id can land on the
/// wrong object. Afterwards every object KMS links to a material holds exactly that material:
/// re-imported by its id, KMS (LocalStack computes the id from what it unwraps) reports the
/// same id back.
#[test]
fn two_overlapping_rotations_never_cross_material_and_object() {
    let ls = LocalStack::start();
    let endpoint = ls.endpoint.clone();
    let arn = runtime().block_on(async {
        let (aws, _) = kms_at(&ls).await;
        let arn = external_key(&aws, "overlap").await;
        Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
        arn
    });
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, endpoint, arn) = (barrier.clone(), endpoint.clone(), arn.clone());
            std::thread::spawn(move || {
                runtime().block_on(async {
                    let aws = Aws::new(sdk_config(&endpoint, static_creds()).await);
                    let rotator = Rotator::new(&aws, softhsm()).on_step(move |step, _| {
                        if step == kms_rotation_guard::rotation::Step::KeepMaterial {
                            barrier.wait();
                        }
                    });
                    rotator.rotate(&request(&arn)).await.map(|(_, r)| r.unwrap()).map_err(|e| e.to_string())
                })
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    println!("{results:#?}");
    let rotated: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(!rotated.is_empty(), "at least one run completes: {results:?}");
    // The first import's object and one per run (or one shared, when the second run read the
    // first one's pending tag before the barrier: the same material, under the same name).
    let objects = objects_of(&arn);
    assert!((2..=3).contains(&objects.len()) && objects.iter().all(|(id, _)| id.starts_with("krg-")), "{objects:?}");

    runtime().block_on(async {
        let (aws, _) = kms_at(&ls).await;
        let report = hsm_rotator(&aws).materials_report(&arn).await.unwrap();
        println!("{}", report.table());
        let current = describe(&aws, &arn).await.current_key_material_id().unwrap().to_string();
        let held = report.materials.iter().find(|m| m.key_material_id == current).unwrap();
        let object = held.hsm_object.clone().unwrap();
        let winner = rotated.iter().find(|r| r.key_material_id.as_deref() == Some(current.as_str())).unwrap();
        assert!(object.contains(winner.hsm_object.as_deref().unwrap().rsplit('=').next().unwrap()), "{object}");
        // The check: KMS unwraps what that object holds and names it.
        aws.kms().delete_imported_key_material().key_id(&arn).send().await.unwrap();
        let back = hsm_rotator(&aws).reimport(&reimport(&arn, Some(&current), false)).await.unwrap();
        assert!(back.materials[0].imported && back.materials[0].hsm_object == object, "{back:?}");
        assert_eq!(describe(&aws, &arn).await.key_state(), Some(&KeyState::Enabled));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The material KMS names lives in an object this login cannot see: on AWS CloudHSM, an
/// object belongs to the crypto user who created it, and other CUs do not see it. That is
/// "not visible to this user", never NOT HELD: the material exists, in someone else's keeping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_in_an_object_this_user_cannot_see_is_reported_as_not_visible_never_not_held() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let arn = external_key(&aws, "other-cu").await;
    Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
    let material = describe(&aws, &arn).await.current_key_material_id().unwrap().to_string();
    let key_id = arn.rsplit('/').next().unwrap();
    // As AWS lists it: the material's description names an object another CU created.
    let proxy = common::fault_proxy::AnsweringProxy::start_at(
        &ls.endpoint,
        &serde_json::json!([common::fault_proxy::kms_reply(
            &["TrentService.ListKeyRotations", key_id],
            serde_json::json!({"Rotations": [{
                "KeyId": arn, "KeyMaterialId": material, "ImportState": "IMPORTED", "KeyMaterialState": "CURRENT",
                "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
                "KeyMaterialDescription": "kms-rotation-guard hsm-object:krg-0000000000000000000000000000beef",
            }], "Truncated": false}),
        )]),
    );
    let aws = Aws::new(sdk_config(&proxy.endpoint, static_creds()).await);
    const NOT_VISIBLE: &str = "not visible to this user (CloudHSM keys belong to the CU that created them)";

    let report = hsm_rotator(&aws).materials_report(&arn).await.unwrap();
    let table = report.table();
    println!("{table}");
    assert!(!report.materials[0].held && table.contains("NOT VISIBLE") && !table.contains("NOT HELD"), "{table}");
    assert!(table.contains(NOT_VISIBLE), "{table}");

    let err = hsm_rotator(&aws).reimport(&reimport(&arn, Some(&material), true)).await.unwrap_err();
    assert!(
        matches!(err, RotationError::Hsm(HsmError::NotVisible { .. })) && err.to_string().contains(NOT_VISIBLE),
        "{err}"
    );

    // The auditor's report: custody unknown, with that reason, never "NOT HELD" (false).
    let err = hsm_rotator(&aws).holds_current_material(&arn).await.unwrap_err();
    assert!(err.to_string().contains(NOT_VISIBLE), "{err}");
}
