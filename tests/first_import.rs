//! The tool's own first import passes its own rule, even when it comes days after
//! CreateKey. ListKeyRotations (with IncludeKeyMaterial=ALL_KEY_MATERIAL) lists a key's first
//! material without a RotationDate, so CreationDate is not the material's date; the
//! material-id tag the rotation module writes holds the LastRotationDate tag to account.
//!
//! LocalStack imports for real (SoftHSM2 generates and wraps), but it cannot backdate
//! CreateKey and has no ListKeyRotations. The fault proxy (tests/fault_proxy.py) therefore
//! patches DescribeKey's CreationDate to three days ago, and answers ListKeyRotations with
//! the shape of the KMS API reference: the first material, CURRENT, IMPORTED, no date.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use aws_sdk_kms::types::OriginType;
use chrono::Utc;
use common::*;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::handler;
use kms_rotation_guard::key::{Home, KeyRef};
use kms_rotation_guard::params::RuleParams;
use kms_rotation_guard::resource::{Protection, Resource, ResourceType};
use kms_rotation_guard::rotation::hsm::{WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{Progress, RotationRequest, Rotator};
use serde_json::{json, Value};

/// LocalStack's default account.
const ACCOUNT: &str = "000000000000";

/// mitmdump with tests/fault_proxy.py answering `answers` in front of `target`.
struct Proxy {
    child: Child,
    endpoint: String,
    /// mitmproxy's home (its CA) and output (`mitmdump.log`).
    _dir: tempdir::TempDir,
}

impl Proxy {
    fn start(target: &str, answers: &Value) -> Proxy {
        let port = free_port();
        let dir = tempdir::TempDir::new("first-import-proxy");
        let log = dir.path().join("mitmdump.log");
        let mut cmd = Command::new(tool("venv", "mitmdump"));
        cmd.args(["-q", "--mode", &format!("reverse:{target}")])
            .args(["--listen-host", "127.0.0.1", "--listen-port", &port.to_string()])
            .args(["-s", root().join("tests/fault_proxy.py").to_str().unwrap()])
            .args(["--set", "keep_host_header=true", "--set", "fault_rate=0"])
            .args(["--set", &format!("aws_errors={answers}")])
            .env("HOME", dir.path());
        output_to(&mut cmd, &log);
        let mut child = cmd.spawn().expect("start mitmdump");
        wait_for_port(port, &mut child, "mitmdump", &log, Duration::from_secs(30));
        Proxy { child, endpoint: format!("http://127.0.0.1:{port}"), _dir: dir }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn verdict(aws: &Aws, key_id: &str) -> (String, String) {
    let bucket = Resource {
        resource_type: ResourceType::S3Bucket,
        resource_id: "invoices".into(),
        name: "invoices".into(),
        home: Home::new(REGION, ACCOUNT),
        protection: Protection::Kms(KeyRef::parse(key_id).unwrap()),
    };
    let a = handler::assess(aws, &RuleParams::default(), ACCOUNT, vec![bucket], Utc::now()).await.unwrap();
    (a[0].verdict.compliance.as_str().to_string(), a[0].verdict.annotation.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_import_days_after_create_key_passes_the_rule() {
    let ls = LocalStack::start();
    let direct = Aws::new(sdk_config(&ls.endpoint, static_creds()).await);
    let created = direct.kms().create_key().origin(OriginType::External).send().await.unwrap();
    let id = created.key_metadata().unwrap().key_id().to_string();
    // LocalStack refuses RSA_AES_KEY_WRAP_SHA_1, which AWS accepts (docs/emulators.md).
    let request = RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(&id)
    };
    let (plan, record) = Rotator::new(&direct, softhsm()).rotate(&request).await.unwrap();
    assert_eq!(plan.progress, Progress::FirstImport);
    assert!(record.is_some());
    let described = direct.kms().describe_key().key_id(&id).send().await.unwrap();
    let meta = described.key_metadata().unwrap();
    let material = meta.current_key_material_id().expect("LocalStack names the current material").to_string();
    let arn = meta.arn().unwrap().to_string();

    let three_days_ago = (Utc::now() - chrono::Duration::days(3)).timestamp() as f64;
    let answers = json!([
        {"match": ["TrentService.DescribeKey", id], "patch": {"KeyMetadata": {"CreationDate": three_days_ago}}},
        {"match": ["TrentService.ListKeyRotations", id], "status": 200, "content_type": "application/x-amz-json-1.1",
         "body": json!({"Rotations": [{"KeyId": arn, "KeyMaterialId": material, "KeyMaterialState": "CURRENT",
                                        "ImportState": "IMPORTED", "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}],
                        "Truncated": false}).to_string()}
    ]);
    let proxy = Proxy::start(&ls.endpoint, &answers);
    let aws = Aws::new(sdk_config(&proxy.endpoint, static_creds()).await);
    let seen = aws.kms().describe_key().key_id(&id).send().await.unwrap();
    let seen_created = seen.key_metadata().unwrap().creation_date().unwrap().secs();
    assert!((seen_created as f64 - three_days_ago).abs() < 2.0, "the proxy did not backdate CreateKey");

    let (compliance, annotation) = verdict(&aws, &id).await;
    assert_eq!(compliance, "COMPLIANT", "{annotation}");
    assert!(annotation.contains("0 days ago"), "{annotation}");
}
