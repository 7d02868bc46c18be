//! The three Config rules this product deploys, as the handlers know them. `rules/*.yaml`
//! is the declarative twin (checked by tests/template/rules.rs).
//!
//! Data only; no AWS call.

use crate::resource::ResourceType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Default rule name (the deployed name may differ; Config sends it in each event).
    pub name: &'static str,
    pub resource_types: &'static [ResourceType],
}

pub const RDS: Rule =
    Rule { name: "kms-rotation-rds", resource_types: &[ResourceType::RdsDbInstance, ResourceType::RdsDbCluster] };
pub const DYNAMODB: Rule = Rule { name: "kms-rotation-dynamodb", resource_types: &[ResourceType::DynamoDbTable] };
pub const S3: Rule = Rule { name: "kms-rotation-s3", resource_types: &[ResourceType::S3Bucket] };

pub const ALL: [Rule; 3] = [RDS, DYNAMODB, S3];

impl Rule {
    /// By short name (`rds`, `dynamodb`, `s3`) or full rule name.
    pub fn find(name: &str) -> Option<Rule> {
        ALL.into_iter().find(|r| r.name == name || r.name.strip_prefix("kms-rotation-") == Some(name))
    }

    /// The rule that evaluates a resource type.
    pub fn for_type(t: &str) -> Option<Rule> {
        ALL.into_iter().find(|r| r.resource_types.iter().any(|rt| rt.as_str() == t))
    }
}
