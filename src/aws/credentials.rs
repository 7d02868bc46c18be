//! Clients acting as an assumed role (the key-reader role in a key's account), cached for the
//! process: warm invocations reuse credentials instead of calling sts:AssumeRole each time,
//! and renew them well before they expire.

use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use super::Aws;

/// Assumed-role credentials are renewed this long before they expire: Lambda's longest
/// timeout (900 s), so credentials taken at the start of an invocation outlive it.
pub const CREDENTIAL_RENEWAL_MARGIN: Duration = Duration::from_secs(15 * 60);

impl Aws {
    /// A KMS client acting as `role_arn`, from the process-wide cache while its credentials
    /// have more than [`CREDENTIAL_RENEWAL_MARGIN`] left, else from a new sts:AssumeRole.
    pub async fn kms_as_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> Result<aws_sdk_kms::Client, SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>> {
        let fresh = |expiry: &SystemTime| {
            expiry.duration_since(SystemTime::now()).is_ok_and(|left| left > CREDENTIAL_RENEWAL_MARGIN)
        };
        if let Some((client, _)) =
            self.assumed.lock().ok().and_then(|m| m.get(role_arn).cloned()).filter(|(_, e)| fresh(e))
        {
            return Ok(client);
        }
        let out = self.sts().assume_role().role_arn(role_arn).role_session_name(session_name).send().await?;
        let Some(c) = out.credentials() else {
            // AWS always returns credentials with a 200; never cache a response without them.
            return Err(SdkError::construction_failure("sts:AssumeRole returned no credentials"));
        };
        let expiry = SystemTime::try_from(*c.expiration()).unwrap_or(SystemTime::UNIX_EPOCH);
        let creds = aws_sdk_kms::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "kms-rotation-guard-assumed-role",
        );
        let client = self.kms_with(Some(creds));
        if let Ok(mut m) = self.assumed.lock() {
            m.insert(role_arn.to_string(), (client.clone(), expiry));
        }
        Ok(client)
    }
}
