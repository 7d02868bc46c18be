//! Coverage: which account × Region the scan saw, and why not where it did not.

use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoverageStatus {
    /// Every resource family was enumerated.
    Scanned,
    /// Some families were enumerated, others not (the reason names them).
    Partial,
    /// Nothing was enumerated.
    NotScanned,
}

impl CoverageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CoverageStatus::Scanned => "scanned",
            CoverageStatus::Partial => "partial",
            CoverageStatus::NotScanned => "not-scanned",
        }
    }
}

/// One account × Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageRow {
    pub account: String,
    pub region: String,
    pub status: CoverageStatus,
    /// Why not (every failed family, or the member role), in plain words.
    pub reason: Option<String>,
    /// Resources found there (judged or not).
    pub resources: usize,
}

/// Error codes AWS answers when credentials meet a Region the account has not enabled:
/// "The security token included in the request is invalid" (UnrecognizedClientException on
/// JSON services, InvalidClientTokenId on query services), STS's RegionDisabledException,
/// EC2-style AuthFailure / OptInRequired.
const REGION_REFUSED: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidToken",
    "RegionDisabledException",
    "AuthFailure",
    "OptInRequired",
];

/// Denials, as `aws::classify` writes them at the head of a message.
const DENIED: &[&str] = &["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"];

/// Why an account × Region (or one family of it) could not be read, for the coverage table.
pub fn reason(region: &str, e: &Error) -> String {
    match e {
        Error::MemberRole { role_arn, message, .. } => {
            if REGION_REFUSED.iter().any(|c| message.starts_with(c)) {
                format!("opt-in Region {region} is not enabled for this account (sts:AssumeRole: {message})")
            } else {
                format!(
                    "no access: sts:AssumeRole on {role_arn} was refused (the role is missing, or does not trust \
                     the scanner; AWS does not say which): {message}"
                )
            }
        }
        Error::Aws { operation, transient, message } => {
            let code = message.split([':', ' ']).next().unwrap_or("");
            if REGION_REFUSED.contains(&code) {
                format!("opt-in Region {region} is not enabled for this account ({operation}: {message})")
            } else if DENIED.contains(&code) {
                format!("denied: {operation} ({message})")
            } else if *transient {
                format!("{operation} kept failing after retries: {message}")
            } else {
                format!("{operation} failed: {message}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_say_denied_no_role_and_opt_in_region() {
        let aws =
            |message: &str| Error::Aws { operation: "s3:ListAllMyBuckets", transient: false, message: message.into() };
        assert!(reason(
            "ap-east-1",
            &aws("UnrecognizedClientException: The security token included in the request is invalid")
        )
        .starts_with("opt-in Region ap-east-1 is not enabled"));
        assert!(reason("eu-west-1", &aws("AccessDenied: no")).starts_with("denied: s3:ListAllMyBuckets"));
        let role = Error::MemberRole {
            account: "1".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            message: "AccessDenied: x".into(),
        };
        assert!(reason("eu-west-1", &role).contains("the role is missing, or does not trust"));
        let thr = Error::Aws {
            operation: "dynamodb:ListTables",
            transient: true,
            message: "ThrottlingException: slow".into(),
        };
        assert!(reason("eu-west-1", &thr).contains("kept failing after retries"));
    }
}
