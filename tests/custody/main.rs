//! Key material custody against LocalStack KMS and SoftHSM2: the HSM keeps every material it
//! imports, so after DeleteImportedKeyMaterial (or expiry) `reimport` brings back the same
//! material.
//!
//! LocalStack gap (measured, 2026.3.0): after a re-import, Decrypt fails there with
//! InternalError, which AWS does not do. These tests assert the key state and material id
//! instead, and the product is not bent around it.//!
//! One test binary: `material` (re-import, `materials`, the CLI cycle, custody in `scan`),
//! `multi_region` and `probe_and_resume`; this file holds the shared helpers.

mod china;
#[path = "../common/mod.rs"]
mod common;
mod expiry;
mod force;
mod material;
mod multi_region;
mod naming;
mod probe_and_resume;

use std::process::Command;

use aws_sdk_kms::types::{KeyState, OriginType};
use common::*;
use kms_rotation_guard::aws::{Aws, CallCounter};
use kms_rotation_guard::rotation::hsm::{KeyMaterialSource, SoftwareSource, WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{Progress, ReimportRequest, RotationError, RotationRequest, Rotator};

const ALGORITHM: WrappingAlgorithm = WrappingAlgorithm::RsaesOaepSha1;

fn request(key: impl Into<String>) -> RotationRequest {
    RotationRequest {
        wrapping_algorithm: Some(ALGORITHM),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new(key)
    }
}

fn reimport(key: &str, id: Option<&str>, dry_run: bool) -> ReimportRequest {
    ReimportRequest { key: key.into(), key_material_id: id.map(str::to_string), dry_run, expiry: None }
}

async fn kms_at(ls: &LocalStack) -> (Aws, CallCounter) {
    let counter = CallCounter::default();
    (Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_counter(counter.clone()), counter)
}

async fn external_key(aws: &Aws, alias: &str) -> String {
    let k = aws.kms().create_key().origin(OriginType::External).send().await.unwrap();
    let arn = k.key_metadata().unwrap().arn().unwrap().to_string();
    aws.kms().create_alias().alias_name(format!("alias/{alias}")).target_key_id(&arn).send().await.unwrap();
    arn
}

async fn describe(aws: &Aws, key: &str) -> aws_sdk_kms::types::KeyMetadata {
    aws.kms().describe_key().key_id(key).send().await.unwrap().key_metadata().unwrap().clone()
}

fn hsm_rotator(aws: &Aws) -> Rotator<'_> {
    Rotator::new(aws, softhsm()).wrapping(Some(ALGORITHM), WrappingKeySpec::Rsa2048)
}

/// (operation, signing Region, request body) of every KMS request, in order.
#[derive(Debug, Clone, Default)]
struct CallLog(std::sync::Arc<std::sync::Mutex<Vec<(String, String, serde_json::Value)>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }
    fn read_before_transmit(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let op = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        // SigV4: Credential=<key>/<date>/<region>/kms/aws4_request
        let auth = ctx.request().headers().get("authorization").unwrap_or_default();
        let region = auth.split('/').nth(2).unwrap_or_default().to_string();
        let body = ctx.request().body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let body = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default();
        self.0.lock().unwrap().push((op, region, body));
        Ok(())
    }
}
