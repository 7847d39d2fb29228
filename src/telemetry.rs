//! Prometheus metrics — what an operator watches: sign-ins by organization,
//! connection and outcome; how long identity providers take; ID and logout tokens
//! refused, by reason; background refresh outcomes; the database pool; HTTP requests
//! by route and status. Recorded through the `metrics` facade; rendered at `/metrics`.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const LOGINS: &str = "ssogate_logins_total";
pub const IDP_REQUEST_SECONDS: &str = "ssogate_idp_request_duration_seconds";
pub const TOKEN_REJECTIONS: &str = "ssogate_idp_token_rejections_total";
pub const REFRESHES: &str = "ssogate_upstream_refreshes_total";
pub const HTTP_REQUESTS: &str = "ssogate_http_requests_total";
pub const HTTP_REQUEST_SECONDS: &str = "ssogate_http_request_duration_seconds";
pub const DB_POOL_CONNECTIONS: &str = "ssogate_db_pool_connections";
pub const RATE_LIMITED: &str = "ssogate_rate_limited_total";
pub const IDP_REFUSED: &str = "ssogate_idp_requests_refused_total";

/// Installs the process-wide recorder; the handle renders the exposition text.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
    let handle =
        PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?.install_recorder()?;
    Ok(handle)
}

/// A sign-in that came back from the IdP: `outcome` is `success` or the OAuth error code.
pub fn login(organization_id: &str, connection_id: &str, outcome: &'static str) {
    counter!(LOGINS, "organization" => organization_id.to_owned(), "connection" => connection_id.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// One request to an identity provider (`outcome`: `ok`, `error` or `unreachable`).
pub fn idp_request(host: &str, outcome: &'static str, took: Duration) {
    histogram!(IDP_REQUEST_SECONDS, "host" => host.to_owned(), "outcome" => outcome).record(took.as_secs_f64());
}

/// A request to an IdP held back (`why`: `circuit_open` or `saturated`).
pub fn idp_refused(host: &str, why: &'static str) {
    counter!(IDP_REFUSED, "host" => host.to_owned(), "why" => why).increment(1);
}

/// An ID token or logout token refused (`reason` as in `IdTokenError::reason`).
pub fn token_rejected(token: &'static str, reason: &'static str) {
    counter!(TOKEN_REJECTIONS, "token" => token, "reason" => reason).increment(1);
}

/// A background refresh: `refreshed`, `retrying` or `session_ended`.
pub fn refresh(outcome: &'static str) {
    counter!(REFRESHES, "outcome" => outcome).increment(1);
}

pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    let labels = [("route", route.to_owned()), ("method", method.to_owned()), ("status", status.to_string())];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_REQUEST_SECONDS, &labels[..2]).record(took.as_secs_f64());
}

/// Sampled when the metrics are scraped.
pub fn db_pool(size: u32, idle: usize) {
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(size.saturating_sub(idle as u32) as f64);
}

/// A request refused by a rate limit (`limit`: `authorize`, `token`, `admin`).
pub fn rate_limited(limit: &'static str) {
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}
