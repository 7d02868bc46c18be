//! KMS keys: how resources reference them, what we learn about them, and how.
//!
//! No verdict here: the facts go to `verdict`, which judges them.
pub mod cache;
pub mod facts;
pub mod lookup;
pub mod reference;

pub use facts::{AutoRotation, Denial, Expiry, Fact, KeyFacts, KeyLookup, KeyManager, Rotation};
pub use reference::{Home, KeyRef};
