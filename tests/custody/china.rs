//! China Regions (issue 19): KMS there takes 16-byte SM4 material and offers no
//! RSA_AES_KEY_WRAP (KMS Developer Guide on amazonaws.cn, "Step 3: Encrypt the key material").
//! The tool makes 32-byte AES-256 material, so it refuses those keys before it generates
//! anything or asks KMS for anything: never half-way.

use super::*;

/// A source that counts what it is asked to do, and generates nothing.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl KeyMaterialSource for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn supported_algorithms(&self) -> Result<Vec<WrappingAlgorithm>, kms_rotation_guard::rotation::hsm::HsmError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(WrappingAlgorithm::PREFERENCE.to_vec())
    }
    fn generate_and_wrap(
        &self,
        _: &[u8],
        _: WrappingKeySpec,
        _: WrappingAlgorithm,
    ) -> Result<kms_rotation_guard::rotation::hsm::WrappedKeyMaterial, kms_rotation_guard::rotation::hsm::HsmError>
    {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("material generated for a China Region key")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn china_region_keys_are_refused_before_anything_is_generated_or_imported() {
    // Nothing listens here: any KMS call would fail with a connection error, not a refusal.
    let counter = CallCounter::default();
    let config = sdk_config("http://127.0.0.1:9", static_creds()).await;
    let in_beijing = config.to_builder().region(aws_config::Region::new("cn-north-1")).build();
    let keys = [
        ("arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", config.clone()),
        ("arn:aws-cn:kms:cn-northwest-1:111122223333:alias/orders", config.clone()),
        ("alias/orders", in_beijing.clone()),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", in_beijing),
    ];
    let source = Counting::default();
    for (key, config) in keys {
        let aws = Aws::new(config).with_counter(counter.clone());
        let rotator = Rotator::new(&aws, &source);
        for err in [
            rotator.rotate(&request(key)).await.unwrap_err(),
            rotator.reimport(&reimport(key, None, false)).await.unwrap_err(),
        ] {
            assert!(matches!(err, RotationError::Refused(_)), "{key}: {err}");
            let text = err.to_string();
            assert!(
                text.contains("China Region") && text.contains("SM4") && text.contains("nothing was generated"),
                "{text}"
            );
        }
    }
    assert_eq!(counter.snapshot().values().sum::<u64>(), 0, "{:?}", counter.snapshot());
    assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 0);
}
