//! ssogate: a self-hosted enterprise single sign-on broker.
//!
//! - [`core`]: pure domain rules (validation, group mapping, roles), no I/O.
//! - [`crypto`]: encryption at rest, credential hashing.
//! - [`store`]: persistence behind the [`store::Store`] trait (SQLite, PostgreSQL).
//! - [`upstream`]: ssogate as an OIDC relying party of customer identity providers.
//! - [`outbound`]: SSRF-guarded HTTP to addresses ssogate was given.
//! - [`sync`]: in-memory locks that outlive a panic.
//! - [`http`]: the HTTP surface (admin API, health), thin handlers over the above.
//! - [`config`] and [`server`]: command line and wiring.

#![forbid(unsafe_code)]

// The broker's unit tests run the integration tests' fake OP, which names this crate.
#[cfg(test)]
extern crate self as ssogate;

pub mod admin_token;
pub mod broker;
pub mod config;
pub mod core;
pub mod crypto;
pub mod http;
pub mod oidc;
pub mod outbound;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod upstream;
