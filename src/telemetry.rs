//! Prometheus metrics — what an operator watches: sign-ins by organization,
//! connection and outcome; how long identity providers take; ID and logout tokens
//! refused, by reason; background refresh outcomes; the database pool; HTTP requests
//! by route and status. Recorded through the `metrics` facade; rendered at `/metrics`.
//!
//! Labels that name tenants (an organization and connection, an IdP's host) are
//! capped: the first `--metrics-tenant-labels` of each get series of their own, the
//! rest are counted together as `_other`, so a scrape stays the same size at
//! 100,000 tenants as at a hundred.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
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

/// What a tenant-naming label counts under once the cap is reached.
pub const OTHER_TENANTS: &str = "_other";

/// The tenants (organization and connection; IdP host) given labels of their own.
static TENANT_LABELS: OnceLock<TenantLabels> = OnceLock::new();

struct TenantLabels {
    sign_ins: Mutex<LabelCap>,
    hosts: Mutex<LabelCap>,
}

/// Admits the first `cap` distinct keys; every later one is [`OTHER_TENANTS`].
struct LabelCap {
    cap: usize,
    admitted: HashSet<String>,
}

impl LabelCap {
    fn new(cap: usize) -> Self {
        LabelCap { cap, admitted: HashSet::new() }
    }

    /// Whether `key` has a label of its own (admitting it while there is room).
    fn admits(&mut self, key: &str) -> bool {
        if self.admitted.contains(key) {
            return true;
        }
        if self.admitted.len() >= self.cap {
            return false;
        }
        self.admitted.insert(key.to_owned());
        true
    }
}

/// `key`'s label value under `cap` (all of them when metrics are not installed,
/// as in unit tests).
fn tenant_label(cap: impl Fn(&TenantLabels) -> &Mutex<LabelCap>, key: &str) -> String {
    let admitted = TENANT_LABELS.get().is_none_or(|labels| crate::sync::lock(cap(labels)).admits(key));
    if admitted {
        key.to_owned()
    } else {
        OTHER_TENANTS.to_owned()
    }
}

/// Installs the process-wide recorder; the handle renders the exposition text.
/// `tenant_labels`: how many tenants get labels of their own (see the module).
pub fn install(tenant_labels: usize) -> anyhow::Result<PrometheusHandle> {
    const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
    let labels = TenantLabels { sign_ins: Mutex::new(LabelCap::new(tenant_labels)), hosts: Mutex::new(LabelCap::new(tenant_labels)) };
    if TENANT_LABELS.set(labels).is_err() {
        anyhow::bail!("metrics are installed already");
    }
    let handle =
        PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?.install_recorder()?;
    Ok(handle)
}

/// A sign-in that came back from the IdP: `outcome` is `success` or the OAuth error code.
pub fn login(organization_id: &str, connection_id: &str, outcome: &'static str) {
    let (organization, connection) = if tenant_label(|l| &l.sign_ins, &format!("{organization_id} {connection_id}")) == OTHER_TENANTS {
        (OTHER_TENANTS.to_owned(), OTHER_TENANTS.to_owned())
    } else {
        (organization_id.to_owned(), connection_id.to_owned())
    };
    counter!(LOGINS, "organization" => organization, "connection" => connection, "outcome" => outcome).increment(1);
}

/// One request to an identity provider (`outcome`: `ok`, `error` or `unreachable`).
pub fn idp_request(host: &str, outcome: &'static str, took: Duration) {
    histogram!(IDP_REQUEST_SECONDS, "host" => tenant_label(|l| &l.hosts, host), "outcome" => outcome).record(took.as_secs_f64());
}

/// A request to an IdP held back (`why`: `circuit_open` or `saturated`).
pub fn idp_refused(host: &str, why: &'static str) {
    counter!(IDP_REFUSED, "host" => tenant_label(|l| &l.hosts, host), "why" => why).increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tenants_get_labels_and_the_rest_count_together() {
        let mut cap = LabelCap::new(2);
        assert!(cap.admits("org_a con_a"));
        assert!(cap.admits("org_b con_b"));
        assert!(!cap.admits("org_c con_c"), "past the cap");
        assert!(cap.admits("org_a con_a"), "an admitted tenant keeps its label");
        assert_eq!(cap.admitted.len(), 2, "nothing past the cap is remembered");
        assert!(!LabelCap::new(0).admits("org_a con_a"), "0: no tenant labels");
    }
}
