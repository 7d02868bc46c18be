//! Property tests of the pure parts: event parsing, configuration items, key references,
//! rotation dates, rule parameters and the verdict. No network; the whole file runs in
//! seconds. Failures are not persisted to disk (the seed is printed instead).
//!
//! One test binary, one module per topic: `events` (the sample events, mutated),
//! `key_refs`, `dates` (rotation dates, and KMS dates far from now), `verdicts` and `params`.

#[path = "../common/mod.rs"]
mod common;
mod dates;
mod events;
mod key_refs;
mod params;
mod verdicts;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, SecondsFormat, TimeZone, Utc};
use common::json::{arb_json, arb_string};
use kms_rotation_guard::event;
use kms_rotation_guard::key::{AutoRotation, Denial, Fact, Home, KeyFacts, KeyLookup, KeyManager, KeyRef, Rotation};
use kms_rotation_guard::params::{RuleParams, MATERIAL_ID_TAG, PARAMETER_NAMES};
use kms_rotation_guard::resource::{self, Protection, ResourceType};
use kms_rotation_guard::verdict::{self, decide, Compliance, MAX_ANNOTATION};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

fn cfg(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}
