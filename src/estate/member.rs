//! The member role: the role a scan (or an organization rule) assumes in each member
//! account, deployed by member-role.yaml as a StackSet.

use crate::aws::Aws;
use crate::error::Error;
use crate::key::reference::partition_of;

/// The name member-role.yaml gives the role by default.
pub const DEFAULT_MEMBER_ROLE: &str = "kms-rotation-guard-member";

/// A validated IAM role name, assumed as `arn:{partition}:iam::{account}:role/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole(String);

impl MemberRole {
    /// Refuses what IAM would refuse, naming the option.
    pub fn new(name: &str) -> Result<MemberRole, Error> {
        let bad = |reason: String| Error::InvalidParameter { name: "member role name".into(), reason };
        match crate::params::role_name(&serde_json::Value::String(name.to_string())).map_err(bad)? {
            Some(n) => Ok(MemberRole(n)),
            None => Err(bad("it is empty".into())),
        }
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    pub fn arn(&self, partition: &str, account: &str) -> String {
        crate::handler::execution_role_arn(partition, account, &self.0)
    }

    /// `aws` acting in `account` through this role (one sts:AssumeRole per account per
    /// credential lifetime, process-wide). A refusal is [`Error::MemberRole`]; AWS answers
    /// AccessDenied both when the role is missing and when its trust policy does not admit
    /// the caller, and does not say which.
    pub async fn aws_in(&self, aws: &Aws, account: &str) -> Result<Aws, Error> {
        crate::handler::member_account(aws, account, &self.0).await
    }

    /// The ARN in `aws`'s partition.
    pub fn arn_for(&self, aws: &Aws, account: &str) -> String {
        self.arn(partition_of(&aws.region()), account)
    }
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_iam_does() {
        assert_eq!(
            MemberRole::new("kms-rotation-guard-member").unwrap().arn("aws", "111122223333"),
            "arn:aws:iam::111122223333:role/kms-rotation-guard-member"
        );
        for bad in ["", "a b", "role/x", &"r".repeat(65)] {
            assert!(MemberRole::new(bad).unwrap_err().to_string().contains("member role name"), "{bad}");
        }
    }
}
