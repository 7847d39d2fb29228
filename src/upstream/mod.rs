//! ssogate as a relying party of each organization's identity provider.

pub(crate) mod http;
pub mod id_token;
pub mod metadata;
pub(crate) mod provider;
pub(crate) mod rp;

pub(crate) use http::IdpClient;
pub(crate) use provider::Providers;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the identity provider is not allowed: {0}")]
    Forbidden(String),
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider answered with HTTP status {0}")]
    BadStatus(u16),
    #[error("the identity provider's answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the identity provider's answer is not valid: {0}")]
    Malformed(String),
    /// The circuit breaker holds requests back after repeated failures.
    #[error("the identity provider at {host} failed {failures} times in a row; it is not contacted for another {retry_in_secs} s")]
    CircuitOpen { host: String, failures: u32, retry_in_secs: u64 },
    #[error("too many requests are already waiting for the identity provider at {0}")]
    Saturated(String),
}
