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

pub(crate) mod admin_token;
pub(crate) mod broker;
pub mod config;
pub mod core;
pub mod crypto;
pub(crate) mod http;
pub mod oidc;
pub(crate) mod outbound;
pub mod server;
pub mod store;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub mod upstream;

/// The boundaries a workspace of crates would enforce, checked here instead (one
/// crate builds and links faster on two cores, and nothing is published apart): the
/// core does no I/O and knows no outer layer; the store and the upstream relying
/// party know nothing of HTTP handlers or the broker.
#[cfg(test)]
mod layering {
    use std::path::Path;

    fn sources(dir: &str) -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut found = vec![];
        let mut dirs = vec![root];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    found.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        found
    }

    fn assert_none_use(dir: &str, forbidden: &[&str]) {
        for (path, text) in sources(dir) {
            for line in text.lines().map(str::trim).filter(|l| l.starts_with("use ") || l.starts_with("pub use ")) {
                if let Some(f) = forbidden.iter().find(|f| line.contains(*f)) {
                    panic!("{path}: `{line}` reaches `{f}`, outside what {dir}/ may use");
                }
            }
        }
    }

    #[test]
    fn each_layer_uses_only_what_is_below_it() {
        let io = ["tokio", "sqlx", "reqwest", "axum", "hyper", "tower"];
        let outer = ["crate::store", "crate::http", "crate::broker", "crate::upstream", "crate::server", "crate::outbound"];
        assert_none_use("core", &[&io[..], &outer[..]].concat());
        assert_none_use("store", &["crate::http", "crate::broker", "crate::upstream", "crate::server", "axum"]);
        assert_none_use("upstream", &["crate::http", "crate::broker", "crate::store", "crate::server", "axum"]);
        assert_none_use("broker", &["crate::http", "crate::server", "axum"]);
    }
}
