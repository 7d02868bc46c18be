//! kms-rotation-guard: AWS Config rules proving that encrypted RDS, DynamoDB and S3
//! resources use KMS keys whose (imported) key material was rotated in time.
//!
//! Data flows one way: event → resources → key references → key facts (one lookup per
//! key) → verdicts (pure) → evaluations → PutEvaluations.
//!
//! Layers, bottom to top; a module never imports one above it (`scripts/import-graph`
//! prints the graph and fails on a circle or an upward import):
//!
//! 1. `error`
//! 2. `aws`, `logging`, `params`, `event`
//! 3. `key`
//! 4. `resource`, `rule`
//! 5. `verdict` (pure)
//! 6. `rotation`, `remediation`, `report`
//! 7. `handler`, `audit`
//! 8. `estate`
//! 9. `runbook`
//! 10. `lambda`, and `testbed` (seeding for the demo, the tests and the bench, which nothing
//!     in the library may use)
//!
//! The binaries (`src/main.rs` with `src/cli/`, and `src/bin/`) sit on top.

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
