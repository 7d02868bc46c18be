//! KMS keys: how resources reference them, what we learn about them, and how.
pub mod facts;
pub mod lookup;
pub mod reference;

pub use facts::{AutoRotation, Denial, Expiry, Fact, KeyFacts, KeyLookup, KeyManager, Rotation};
pub use reference::{Home, KeyRef};
