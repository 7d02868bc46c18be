//! `rollback` on LocalStack + SoftHSM: an alias swap goes back (and a second run changes
//! nothing), an in-place rotation is not undone and every older ciphertext still decrypts.

use aws_sdk_kms::primitives::Blob;
use kms_rotation_guard::runbook::rollback;
use kms_rotation_guard::runbook::ROLLBACK_TAG;

use crate::common::*;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_swap_rolls_back_to_the_recorded_key_re_enabling_it_and_a_second_run_changes_nothing() {
    let ls = LocalStack::start();
    let (aws, counter) = aws_at(&ls, None, None).await;
    let old = byok_key(&aws, "rb-swap", &[]).await;
    let new = alias_swap(&aws, "alias/rb-swap").await;
    assert_ne!(old, new);
    assert_eq!(target_of(&aws, "alias/rb-swap").await, new);
    // As if retire had taken the old key out of use meanwhile.
    aws.kms().disable_key().key_id(&old).send().await.unwrap();

    let r = rollback::run(&aws, "alias/rb-swap", false).await.unwrap();
    assert_eq!(r.outcome, "rolled back");
    assert_eq!((r.from_key.as_deref(), r.to_key.as_deref()), (Some(new.as_str()), Some(old.as_str())));
    assert!(r.re_enabled);
    assert_eq!(target_of(&aws, "alias/rb-swap").await, old);
    assert_eq!(state_of(&aws, &old).await, "Enabled");
    assert_eq!(state_of(&aws, &new).await, "Enabled", "the successor stays usable for what it encrypted");
    assert!(tags_of(&aws, &old).await[ROLLBACK_TAG].contains(new.rsplit('/').next().unwrap()));

    counter.reset();
    let again = rollback::run(&aws, "alias/rb-swap", false).await.unwrap();
    assert_eq!(again.outcome, "already rolled back");
    assert!(again.unchanged);
    assert_eq!(kms_writes(&counter), Vec::<String>::new(), "a second rollback writes nothing");
    assert_eq!(target_of(&aws, "alias/rb-swap").await, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rotation_is_not_rolled_back_and_older_ciphertext_still_decrypts() {
    let ls = LocalStack::start();
    let (aws, counter) = aws_at(&ls, None, None).await;
    let key = byok_key(&aws, "rb-inplace", &[]).await;
    let before = aws
        .kms()
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(&b"made before the rotation"[..]))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    kms_rotation_guard::rotation::Rotator::new(&aws, softhsm()).rotate(&request(&key)).await.unwrap();

    counter.reset();
    let r = rollback::run(&aws, "alias/rb-inplace", false).await.unwrap();
    assert_eq!(r.outcome, "in-place: no rollback");
    assert!(r.unchanged);
    assert!(r.message.contains("KMS cannot make older key material current again"), "{}", r.message);
    assert!(r.message.contains("every ciphertext made before the rotation still decrypts"), "{}", r.message);
    assert_eq!(kms_writes(&counter), Vec::<String>::new(), "nothing is changed");
    // What the message says, checked.
    let plain = aws.kms().decrypt().ciphertext_blob(before).send().await.unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), b"made before the rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_no_rotation_is_refused() {
    let ls = LocalStack::start();
    let (aws, _) = aws_at(&ls, None, None).await;
    let k = aws.kms().create_key().send().await.unwrap();
    let id = k.key_metadata().unwrap().key_id().to_string();
    aws.kms().create_alias().alias_name("alias/rb-never").target_key_id(&id).send().await.unwrap();
    let e = rollback::run(&aws, "alias/rb-never", false).await.unwrap_err();
    assert!(e.is_refusal(), "{e}");
    assert!(e.to_string().contains("no rotation recorded"), "{e}");
}
