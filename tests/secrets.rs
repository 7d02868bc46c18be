//! No secret reaches a log or an error: a full rotation (first import, in-place rotation,
//! alias-swap) runs with every log target at TRACE through the product's own log filter,
//! and the captured logs and errors are searched for the PIN, the import tokens and the
//! wrapped key material, as bytes, hex and base64. (The plaintext material never leaves
//! SoftHSM at all; tests in src/rotation/hsm check the token refuses to reveal it.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use aws_sdk_kms::types::OriginType;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use base64::Engine;
use common::*;
use kms_rotation_guard::aws::Aws;
use kms_rotation_guard::rotation::hsm::{HsmPin, Pkcs11Source, WrappingAlgorithm, WrappingKeySpec};
use kms_rotation_guard::rotation::{RotationRequest, Rotator, Strategy};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records the body of every ImportKeyMaterial request: the token and the wrapped blob.
#[derive(Debug, Clone, Default)]
struct ImportBodies(Arc<Mutex<Vec<Vec<u8>>>>);

impl Intercept for ImportBodies {
    fn name(&self) -> &'static str {
        "ImportBodies"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Metadata>().is_some_and(|m| m.name() == "ImportKeyMaterial") {
            if let Some(b) = ctx.request().body().bytes() {
                self.0.lock().unwrap().push(b.to_vec());
            }
        }
        Ok(())
    }
}

/// The ways a secret could be printed.
fn spellings(bytes: &[u8]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![b64.encode(bytes), hex::encode(bytes), hex::encode_upper(bytes), format!("{bytes:?}")];
    // A prefix is enough to give a secret away: 16 bytes in each form.
    let head = &bytes[..bytes.len().min(16)];
    let head_b64 = b64.encode(head);
    out.extend([
        hex::encode(head),
        head_b64[..head_b64.len().min(20)].to_string(),
        format!("{head:?}").trim_end_matches(']').to_string(),
    ]);
    out
}

/// Everything at TRACE, and the SDK's wire-level targets named one by one: a more specific
/// directive must not lift the cap either.
const WIRE_TRACE: &str = "trace,aws_smithy_runtime::client::orchestrator=trace,aws_sigv4=trace,\
     aws_sigv4::http_request::sign=trace,aws_smithy_http_client=trace,hyper_util=trace,hyper=trace,h2=trace";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rotation_at_trace_logs_no_secret() {
    let logs = Captured::default();
    let writer = logs.clone();
    // Both of the product's log layers (CLI text, Lambda JSON), with the settings an operator
    // might try in RUST_LOG to see the wire: the product's filter keeps them at DEBUG.
    let json_writer = logs.clone();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_filter(kms_rotation_guard::logging::filter_spec(WIRE_TRACE, "trace")),
        )
        .with(kms_rotation_guard::logging::json_layer(
            move || json_writer.clone(),
            kms_rotation_guard::logging::filter_spec(WIRE_TRACE, "trace"),
        ))
        .init();

    let ls = LocalStack::start();
    let bodies = ImportBodies::default();
    let aws = Aws::new(sdk_config(&ls.endpoint, static_creds()).await).with_interceptor(bodies.clone());
    let hsm = softhsm();
    let key = aws
        .kms()
        .create_key()
        .origin(OriginType::External)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    aws.kms().create_alias().alias_name("alias/secret-test").target_key_id(&key).send().await.unwrap();
    // LocalStack rejects RSA_AES_KEY_WRAP_SHA_1; see tests/rotation.rs.
    let req = RotationRequest {
        wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha1),
        wrapping_key_spec: WrappingKeySpec::Rsa2048,
        ..RotationRequest::new("alias/secret-test")
    };
    let mut errors = Vec::new();
    for r in [req.clone(), req.clone(), RotationRequest { strategy: Strategy::AliasSwap, ..req.clone() }] {
        let (_, record) = Rotator::new(&aws, hsm).rotate(&r).await.unwrap();
        assert!(record.is_some());
    }
    // Failures too: a wrong PIN, and a rotation KMS refuses.
    errors
        .push(Pkcs11Source::open(SOFTHSM_MODULE, "no-such-token", &HsmPin::new(SOFTHSM_PIN)).unwrap_err().to_string());
    errors.push(
        Rotator::new(&aws, hsm)
            .rotate(&RotationRequest::new(
                "arn:aws:kms:eu-west-1:000000000000:key/00000000-0000-0000-0000-000000000000",
            ))
            .await
            .unwrap_err()
            .to_string(),
    );

    let bodies = bodies.0.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "three imports were made");
    let mut secrets: Vec<(String, Vec<u8>)> = vec![("PIN".into(), SOFTHSM_PIN.as_bytes().to_vec())];
    for body in &bodies {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        for field in ["ImportToken", "EncryptedKeyMaterial"] {
            let b = base64::engine::general_purpose::STANDARD.decode(v[field].as_str().unwrap()).unwrap();
            // LocalStack's token is shorter than AWS's, but still a secret worth finding.
            assert!(b.len() >= 8, "{field} is real data ({} bytes)", b.len());
            secrets.push((field.into(), b));
        }
    }
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned() + &errors.join("\n");
    // The capture is real: the SDK's DEBUG lines and the product's own are there (at TRACE
    // nothing else logs once the wire crates are capped).
    assert!(text.contains("DEBUG") && text.contains("imported new key material"), "logging was not captured");
    assert!(text.lines().count() > 100, "only {} log lines", text.lines().count());
    // The wire-level events that print whole requests (and so bodies, tokens, signatures)
    // never pass, whatever the directives say.
    for wire in
        ["transmitting request", "received response from service", "signing request", "calculated signing parameters"]
    {
        assert!(!text.contains(wire), "a wire-level TRACE event passed the filter: {wire:?}");
    }
    // The DEBUG the SDK offers instead is there: the cap lowers, it does not silence.
    assert!(text.contains("beginning attempt #1"), "the SDK's DEBUG events are missing");
    for (what, bytes) in &secrets {
        for s in spellings(bytes) {
            if what == "PIN" && s.len() < 8 {
                continue;
            }
            assert!(!text.contains(&s), "{what} appears in the logs or errors as {s:?}");
        }
    }
}
