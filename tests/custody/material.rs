//! The HSM keeps every material it imports: re-import, `materials`, the CLI cycle, custody in `scan`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_material_comes_back_from_the_hsm_with_the_same_material_id() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let arn = external_key(&aws, "custody").await;
    let (plan, _) = Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
    assert_eq!(plan.progress, Progress::FirstImport);
    let material = describe(&aws, &arn).await.current_key_material_id().unwrap().to_string();
    assert_eq!(describe(&aws, &arn).await.current_key_material_id(), Some(material.as_str()));

    // The customer revokes: KMS forgets the material, the key waits for it.
    aws.kms().delete_imported_key_material().key_id(&arn).send().await.unwrap();
    assert_eq!(describe(&aws, &arn).await.key_state(), Some(&KeyState::PendingImport));

    // A rotation would import new material, which could never decrypt the old ciphertext.
    let err = Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap_err();
    assert!(matches!(err, RotationError::Refused(_)) && err.to_string().contains("reimport"), "{err}");

    // AWS refuses material other than the kept one (ImportKeyMaterial: IncorrectKeyMaterialException).
    // LocalStack 2026.3.0 accepts it when KeyMaterialId is given (docs/emulators.md), so
    // that refusal is not asserted here; reimport only ever wraps the object whose CKA_ID is the id.

    // Dry run: names the material and the HSM object, imports nothing.
    counter.reset();
    let plan = hsm_rotator(&aws).reimport(&reimport("alias/custody", None, true)).await.unwrap();
    assert_eq!(plan.materials.len(), 1);
    assert_eq!(plan.materials[0].key_material_id, material);
    assert!(!plan.materials[0].imported && plan.materials[0].hsm_object.contains("CKA_ID=krg-"), "{plan:?}");
    assert_eq!(counter.get("kms.ImportKeyMaterial") + counter.get("kms.GetParametersForImport"), 0);

    // The kept material goes back: Enabled, with the same material id.
    let report = hsm_rotator(&aws).reimport(&reimport("alias/custody", None, false)).await.unwrap();
    assert_eq!(report.materials.len(), 1);
    assert!(report.materials[0].imported);
    let after = describe(&aws, &arn).await;
    assert_eq!(after.key_state(), Some(&KeyState::Enabled));
    assert_eq!(after.current_key_material_id(), Some(material.as_str()));
    assert_eq!(counter.get("kms.ImportKeyMaterial"), 1);

    // Nothing needs it now; a material the HSM never held is refused with a reason.
    let nothing = hsm_rotator(&aws).reimport(&reimport(&arn, None, false)).await.unwrap();
    assert!(nothing.materials.is_empty() && nothing.to_string().contains("nothing to re-import"));
    let err = hsm_rotator(&aws).reimport(&reimport(&arn, Some(&"f".repeat(64)), false)).await.unwrap_err();
    assert!(err.to_string().contains("holds no key material"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materials_shows_held_and_not_held_material() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    // As an earlier version did: the first material imported and forgotten.
    let arn = external_key(&aws, "legacy").await;
    let software = SoftwareSource::new_insecure_for_development();
    Rotator::new(&aws, &software).rotate(&request(&arn)).await.unwrap();
    let before = hsm_rotator(&aws).materials_report(&arn).await.unwrap();
    // LocalStack has no ListKeyRotations: only the current material, and the report says so.
    assert!(before.listed_by.starts_with("DescribeKey") && before.note.is_some(), "{before:?}");
    assert_eq!(before.materials.len(), 1);
    assert!(!before.materials[0].held, "{before:?}");
    assert!(before.table().contains("NOT HELD"), "{}", before.table());

    let (_, record) = Rotator::new(&aws, softhsm()).rotate(&request(&arn)).await.unwrap();
    let material = record.unwrap().key_material_id.unwrap();
    let after = hsm_rotator(&aws).materials(&arn).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].key_material_id, material);
    assert!(after[0].held && after[0].hsm_object.as_deref().unwrap().contains("CKA_ID=krg-"), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_software_source_keeps_nothing_so_it_cannot_reimport_or_let_material_expire() {
    let ls = LocalStack::start();
    let (aws, counter) = kms_at(&ls).await;
    let arn = external_key(&aws, "dev").await;
    let software = SoftwareSource::new_insecure_for_development();
    counter.reset();
    let err = Rotator::new(&aws, &software).reimport(&reimport(&arn, None, false)).await.unwrap_err();
    assert!(err.to_string().contains("cannot keep key material"), "{err}");
    let expiring = RotationRequest { valid_to: Some(chrono::Utc::now() + chrono::Duration::days(90)), ..request(&arn) };
    let err = Rotator::new(&aws, &software).rotate(&expiring).await.unwrap_err();
    assert!(matches!(err, RotationError::Refused(_)) && err.to_string().contains("--valid-to"), "{err}");
    assert_eq!(counter.get("kms.ImportKeyMaterial"), 0);
    // With the HSM, expiring material is allowed: it can be restored.
    let (_, record) = Rotator::new(&aws, softhsm()).rotate(&expiring).await.unwrap();
    assert!(record.unwrap().hsm_object.is_some());
}

/// The operator's cycle through the CLI: rotate, DeleteImportedKeyMaterial, materials, reimport.
/// Run with `--nocapture` to see the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotate_delete_reimport_cycle() {
    let ls = LocalStack::start();
    let (aws, _) = kms_at(&ls).await;
    let arn = external_key(&aws, "cli-custody").await;
    let _ = softhsm(); // makes the token and sets SOFTHSM2_CONF for the children
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(args)
            .args(["--hsm", "pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "rotation-tests"])
            .env("KRG_PKCS11_PIN", SOFTHSM_PIN)
            .env("AWS_ENDPOINT_URL", &ls.endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        println!("$ kms-rotation-guard {} --hsm pkcs11 ...\n{text}", args.join(" "));
        (out.status.code(), text)
    };
    let (code, _) = cli(&[
        "rotate",
        "--key",
        "alias/cli-custody",
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--wrapping-key-spec",
        "RSA_2048",
    ]);
    assert_eq!(code, Some(0));
    // The key was imported a moment ago: only an operator's --force rotates it again.
    let (code, text) = cli(&[
        "rotate",
        "--key",
        "alias/cli-custody",
        "--force",
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--wrapping-key-spec",
        "RSA_2048",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let material = describe(&aws, &arn).await.current_key_material_id().unwrap().to_string();
    assert!(text.contains(&material) && text.contains("hsmObject"), "{text}");
    println!("$ aws kms delete-imported-key-material --key-id {arn}\n");
    aws.kms().delete_imported_key_material().key_id(&arn).send().await.unwrap();
    let (code, text) = cli(&["materials", "--key", "alias/cli-custody"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("PENDING_IMPORT") && text.contains(" held "), "{text}");
    let (code, text) = cli(&[
        "reimport",
        "--key",
        "alias/cli-custody",
        "--dry-run",
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--wrapping-key-spec",
        "RSA_2048",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("would re-import {material}")), "{text}");
    let (code, text) = cli(&[
        "reimport",
        "--key",
        "alias/cli-custody",
        "--wrapping-algorithm",
        "RSAES_OAEP_SHA_1",
        "--wrapping-key-spec",
        "RSA_2048",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("re-imported {material}")) && text.contains("Enabled"), "{text}");
    let after = describe(&aws, &arn).await;
    assert_eq!(after.key_state(), Some(&KeyState::Enabled));
    assert_eq!(after.current_key_material_id(), Some(material.as_str()));
}

/// `scan --hsm`: each row says whether the HSM holds its key's current material: held for
/// material SoftHSM keeps, NOT HELD for material the (development) software source imported
/// and forgot, unknown without `--hsm` or without material, with the reason on stderr.
/// LocalStack plays KMS and STS, and moto plays S3 in LocalStack's account, so the keys are
/// in the scanning account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reports_whether_the_hsm_holds_each_keys_current_material() {
    const ACCOUNT: &str = "000000000000"; // LocalStack's default account
    let ls = LocalStack::start();
    let moto = Moto::start_in(Some(ACCOUNT));
    let (kms, _) = kms_at(&ls).await;
    let kept = external_key(&kms, "kept").await;
    let forgotten = external_key(&kms, "forgotten").await;
    let empty = external_key(&kms, "empty").await; // PendingImport: no material yet
    assert!(kept.contains(&format!(":{ACCOUNT}:key/")), "{kept}");
    Rotator::new(&kms, softhsm()).rotate(&request(&kept)).await.unwrap();
    let software = SoftwareSource::new_insecure_for_development();
    Rotator::new(&kms, &software).rotate(&request(&forgotten)).await.unwrap();
    let s3 = Aws::new(sdk_config(&moto.endpoint, static_creds()).await);
    for (bucket, key) in [("kept-a", &kept), ("kept-b", &kept), ("forgotten", &forgotten), ("empty", &empty)] {
        seed::bucket(&s3, bucket, seed::Sse::Kms(Some(key))).await;
    }
    let scan = |hsm: &[&str]| {
        let started = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_kms-rotation-guard"))
            .args(["scan", "--resource-types", "AWS::S3::Bucket", "--format", "json"])
            .args(hsm)
            .envs(moto.env())
            .env("AWS_ENDPOINT_URL_KMS", &ls.endpoint)
            .env("AWS_ENDPOINT_URL_STS", &ls.endpoint)
            .env("KRG_PKCS11_PIN", SOFTHSM_PIN)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        println!("scan {}: {:?}\n{stderr}", hsm.first().unwrap_or(&"(no --hsm)"), started.elapsed());
        assert_ne!(out.status.code(), Some(2), "{stderr}");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect(&stderr);
        let held =
            |bucket: &str| rows.iter().find(|r| r["resourceName"] == bucket).unwrap()["hsmHoldsMaterial"].clone();
        (["kept-a", "kept-b", "forgotten", "empty"].map(held), stderr)
    };

    let (without, _) = scan(&[]);
    assert!(without.iter().all(|h| h.is_null()), "no HSM, no custody claim: {without:?}");
    let _ = softhsm(); // the token, and SOFTHSM2_CONF for the child
    let (with, stderr) =
        scan(&["--hsm", "pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "rotation-tests"]);
    let json = serde_json::Value::from;
    assert_eq!(with, [json(true), json(true), json(false), serde_json::Value::Null], "{stderr}");
    assert_eq!(stderr.matches("warning: custody of").count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("warning: custody of {empty} unknown: KMS names no current key material")));
}
