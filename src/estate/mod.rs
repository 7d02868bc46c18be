//! The organization as one estate: many accounts × Regions judged in one run, each key
//! read once for all of them, and a coverage table saying what could not be seen.
//!
//! Two ways to see the estate, the same verdicts:
//! - [`scan`]: assume the member role in every account (one sts:AssumeRole per account per
//!   credential lifetime, cached process-wide in [`Aws`]) and enumerate each account ×
//!   Region with it, bounded concurrency;
//! - [`aggregator::scan`]: one SelectAggregateResourceConfig query per resource type
//!   through a Config aggregator, no role assumed.
//!
//! Keys are regional, so each Region has one [`KeyReader`](crate::key::lookup::KeyReader)
//! shared by every account of the estate: a key is read once for the whole estate (KMS's
//! quotas are per account and Region too, so that is also where reads are bounded).

pub mod aggregator;
pub mod coverage;
pub mod export;
pub mod member;
pub mod organization;
pub mod report;
mod sweep;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use coverage::{CoverageRow, CoverageStatus};
pub use export::KeyUsage;
pub use member::MemberRole;
pub use organization::{organization_accounts, OrgAccount};
pub use sweep::scan;

use crate::audit::AuditRow;
use crate::resource::ResourceType;

/// Account × Region units enumerated at once by default. Each unit has its own per-API
/// concurrency (resource modules); eight units keep a scan of hundreds of accounts inside
/// the per-account quotas (each account sees one unit per Region at a time at most) and
/// the scanner's sockets bounded.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What to scan.
#[derive(Debug, Clone)]
pub struct EstateSpec {
    /// Account ids, in the order given (`organization_accounts` or `--accounts`).
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// The role assumed in each member account; `None`: only `own_account` can be read.
    pub member_role: Option<MemberRole>,
    /// The account whose credentials the scan runs with: read with them, no role assumed.
    pub own_account: String,
    pub resource_types: Vec<ResourceType>,
    /// Account × Region units in flight.
    pub concurrency: usize,
}

/// A resource that was found but could not be judged: its key could not be read (the
/// failure survived the retries). Never a verdict; the scan is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unjudged {
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub resource_id: String,
    pub key_reference: Option<String>,
    pub reason: String,
}

/// One scan of the estate.
#[derive(Debug, Clone, Default)]
pub struct EstateScan {
    /// Today's audit rows, sorted by account, Region, type, id.
    pub rows: Vec<AuditRow>,
    /// One row per account × Region of the spec.
    pub coverage: Vec<CoverageRow>,
    pub unjudged: Vec<Unjudged>,
    /// One entry per key the rows use.
    pub keys: Vec<KeyUsage>,
}

impl EstateScan {
    /// Every account × Region scanned and every resource found judged.
    pub fn complete(&self) -> bool {
        self.unjudged.is_empty() && self.coverage.iter().all(|c| c.status == CoverageStatus::Scanned)
    }
}

/// Where a scan is, for a progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub units_done: usize,
    pub units_total: usize,
    pub resources: usize,
}

/// What the JSON export and the HTML page say about the scan itself.
#[derive(Debug, Clone)]
pub struct ScanHeader {
    pub scan_time: DateTime<Utc>,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// `assume-role:<member role>` or `aggregator:<name>`.
    pub source: String,
}
