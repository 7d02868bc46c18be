//! kms-rotation-guard: AWS Config rules proving that encrypted RDS, DynamoDB and S3
//! resources use KMS keys whose (imported) key material was rotated in time.
//!
//! Data flows one way: event → resources → key references → key facts (one lookup per
//! key) → verdicts (pure) → evaluations → PutEvaluations.

#![forbid(unsafe_code)]

pub mod audit;
pub mod aws;
pub mod error;
pub mod estate;
pub mod event;
pub mod handler;
pub mod key;
pub mod lambda;
pub mod logging;
pub mod params;
pub mod remediation;
pub mod report;
pub mod resource;
pub mod rotation;
pub mod rule;
pub mod runbook;
pub mod testbed;
pub mod verdict;

pub use error::Error;
