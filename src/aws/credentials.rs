//! Assumed roles (the key-reader role in a key's account, an organization's member role),
//! cached for the process: warm invocations reuse credentials instead of calling
//! sts:AssumeRole each time, and renew them well before they expire. An `Aws` derived for
//! another account or Region shares the cache.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use super::Aws;

/// Credentials of an assumed role (or any other): the SDK's type.
pub use aws_sdk_sts::config::Credentials;

/// Assumed-role credentials are renewed this long before they expire: Lambda's longest
/// timeout (900 s), so credentials taken at the start of an invocation outlive it.
pub const CREDENTIAL_RENEWAL_MARGIN: Duration = Duration::from_secs(15 * 60);

/// One role's cached credentials; its lock is held while they are fetched.
pub(super) type Slot = Arc<tokio::sync::Mutex<Option<Credentials>>>;

impl Aws {
    /// A KMS client acting as `role_arn` (see [`Aws::assume_role`] for the cache).
    pub async fn kms_as_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> Result<aws_sdk_kms::Client, SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>> {
        Ok(self.kms_with(Some(self.assume_role(role_arn, session_name).await?)))
    }

    /// Credentials of `role_arn`: from the process-wide cache while they have more than
    /// [`CREDENTIAL_RENEWAL_MARGIN`] left, else from a new sts:AssumeRole made with this
    /// `Aws`'s own credentials. One cache for every role this process assumes (key readers
    /// of the security account, member roles of an organization), keyed by role ARN.
    pub async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> Result<Credentials, SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .and_then(|e| e.duration_since(SystemTime::now()).ok())
                .is_some_and(|left| left > CREDENTIAL_RENEWAL_MARGIN)
        };
        let slot = {
            let mut m = self.assumed.lock().expect("credential cache poisoned");
            m.entry(role_arn.to_string()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let out = self.sts().assume_role().role_arn(role_arn).role_session_name(session_name).send().await?;
        let Some(c) = out.credentials() else {
            // AWS always returns credentials with a 200; never cache a response without them.
            return Err(SdkError::construction_failure("sts:AssumeRole returned no credentials"));
        };
        let expiry = SystemTime::try_from(*c.expiration()).unwrap_or(SystemTime::UNIX_EPOCH);
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "kms-rotation-guard-assumed-role",
        );
        *cached = Some(creds.clone());
        Ok(creds)
    }

    /// The same access (Region, endpoints, retries and timeouts, call counter,
    /// interceptors, credential cache) acting with `credentials`, that is, in the account
    /// they belong to. Its clients are built on first use.
    pub fn for_account(&self, credentials: Credentials) -> Aws {
        let provider = aws_sdk_sts::config::SharedCredentialsProvider::new(credentials);
        self.derived(self.config.to_builder().credentials_provider(provider).build())
    }

    /// The same access in another Region.
    pub fn in_region(&self, region: &str) -> Aws {
        self.derived(self.config.to_builder().region(aws_sdk_sts::config::Region::new(region.to_owned())).build())
    }

    fn derived(&self, config: SdkConfig) -> Aws {
        Aws {
            counter: self.counter.clone(),
            extra: self.extra.clone(),
            endpoints: self.endpoints.clone(),
            assumed: self.assumed.clone(),
            ..Aws::new(config)
        }
    }
}
