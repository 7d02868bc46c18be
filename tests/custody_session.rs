//! A warm remediation Lambda keeps its HSM session between invocations. After an HSM failover
//! or an idle drop the session (or its login) is gone; the next invocation must open a new
//! session and log in again, not fail until the function is redeployed.
//!
//! Its own test binary: closing every session of the process on the token would disturb the
//! other SoftHSM tests of a shared binary.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::lambda::{remediate, RemediationSettings};
use serde_json::json;

/// The slot of the test token (its id is random: found by label).
fn token_slot() -> cryptoki::slot::Slot {
    let ctx = cryptoki::context::Pkcs11::new(SOFTHSM_MODULE).unwrap();
    match ctx.initialize(cryptoki::context::CInitializeArgs::new(cryptoki::context::CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    ctx.get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "rotation-tests")
        .unwrap()
}

/// A failover, as the Lambda sees it: C_CloseAllSessions through a second handle of the same
/// module closes every session this process has on the token (and with them its login).
fn close_every_session_behind_the_lambdas_back() {
    let slot = token_slot();
    // SAFETY: the module is the SoftHSM library already loaded by the source; the symbol is
    // the PKCS#11 C_CloseAllSessions(CK_SLOT_ID) -> CK_RV of the standard.
    unsafe {
        let lib = libloading::Library::new(SOFTHSM_MODULE).unwrap();
        let close_all: libloading::Symbol<unsafe extern "C" fn(std::os::raw::c_ulong) -> std::os::raw::c_ulong> =
            lib.get(b"C_CloseAllSessions").unwrap();
        assert_eq!(close_all(slot.id() as std::os::raw::c_ulong), 0, "CKR_OK");
    }
}

/// An idle drop of the login: C_Logout from another session logs every session of the process
/// out (PKCS#11: the login is per application and token).
fn log_out_behind_the_lambdas_back() {
    let ctx = cryptoki::context::Pkcs11::new(SOFTHSM_MODULE).unwrap();
    let session = ctx.open_ro_session(token_slot()).unwrap();
    session.logout().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_lambda_opens_a_new_session_and_logs_in_again_after_a_failover_or_idle_drop() {
    let ls = LocalStack::start();
    let aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await);
    let env = BTreeMap::from([
        ("KRG_PKCS11_MODULE", SOFTHSM_MODULE.to_string()),
        ("KRG_TOKEN_LABEL", "rotation-tests".to_string()),
        ("KRG_PIN_SECRET_ARN", format!("arn:aws:secretsmanager:{REGION}:{SECURITY}:secret:hsm-pin")),
        ("KRG_WRAPPING_ALGORITHM", "RSAES_OAEP_SHA_1".to_string()),
        ("KRG_WRAPPING_KEY_SPEC", "RSA_2048".to_string()),
        ("KRG_CLAIM_SETTLE_MS", "0".to_string()),
    ]);
    // The function's cached source, as `run_remediation` keeps it for the life of the process.
    let settings = RemediationSettings::from_lookup(|n| env.get(n).cloned()).with_source(softhsm());
    let invoke = |alias: &'static str| {
        let (aws, settings) = (&aws, &settings);
        async move {
            // A key without material: the gate lets its first import through.
            let k = aws.kms().create_key().origin(OriginType::External).send().await.unwrap();
            let arn = k.key_metadata().unwrap().arn().unwrap().to_string();
            aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&arn).send().await.unwrap();
            let out = remediate(aws, settings, json!({ "keyId": arn, "resourceType": "s3" })).await;
            println!("{alias}: {out:?}");
            out.map(|v| v["status"].as_str().unwrap_or_default().to_string()).map_err(|e| e.to_string())
        }
    };
    assert_eq!(invoke("warm-first").await, Ok("rotated".to_string()));
    close_every_session_behind_the_lambdas_back();
    assert_eq!(invoke("after-failover").await, Ok("rotated".to_string()));
    log_out_behind_the_lambdas_back();
    assert_eq!(invoke("after-idle-logout").await, Ok("rotated".to_string()));
}
