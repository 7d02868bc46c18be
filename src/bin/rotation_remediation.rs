//! Lambda handler of the rotation remediation (SSM Automation → aws:invokeLambdaFunction).
//!
//! Thin: it starts the runtime; the logic lives in the library (`lambda`, `remediation`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_rotation_guard::lambda::run_remediation().await
}
