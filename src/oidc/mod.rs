//! ssogate as an OpenID Provider for applications: its discovery document and keys.

pub(crate) mod discovery;
pub mod keys;
