//! Lambda handler of the Config rule `kms-rotation-rds`.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kms_rotation_guard::lambda::run_rule(kms_rotation_guard::rule::RDS).await
}
