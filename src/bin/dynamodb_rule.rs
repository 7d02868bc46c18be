//! Lambda handler of the Config rule `kms-rotation-dynamodb`.
//!
//! Thin: it starts the runtime with its rule; the logic lives in the library.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_rotation_guard::lambda::run_rule(kms_rotation_guard::rule::DYNAMODB).await
}
