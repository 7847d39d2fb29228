//! ssogate's integration tests: one binary (linking is most of a test build), one
//! module per area. Each starts the real `ssogate` binary and, where it needs them,
//! real third-party IdPs and relying parties (see `common`).

// A test stops at the first thing that is not as it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod admin_api;
mod app_tokens;
mod client_auth;
mod connection_test;
mod console;
mod directory_sync;
mod fuzz;
mod limits;
mod login;
mod login_faults;
mod openapi;
mod postgres_ops;
mod races;
mod replicas;
mod security;
mod sessions;
mod store;
mod workos_api;
