//! The pure core: domain types, validation, group mapping and role rules.
//! Nothing here does I/O, so all of it is unit-tested in place.

pub mod application;
pub mod audit;
pub mod authorize;
pub mod circuit;
pub mod claims;
pub mod client_ip;
pub mod clock;
pub mod connection;
pub mod entitlements;
pub mod error;
pub mod event;
pub mod group;
pub mod group_mapping;
pub mod group_sync;
pub mod ids;
pub mod network;
pub mod oauth;
pub mod organization;
pub mod patch;
pub mod roles;
pub mod scim;
pub mod session;
pub mod user;
pub mod validate;

pub use error::{Validated, ValidationError};

/// Timestamps are UTC instants, RFC 3339 on the wire.
pub type Timestamp = time::OffsetDateTime;

pub fn now() -> Timestamp {
    // Millisecond precision: what the store keeps, so a value reads back equal.
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t)
}
