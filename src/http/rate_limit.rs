//! Abuse limits on the endpoints worth hammering: `authorize` per client address
//! (each request costs an IdP discovery and a sealed state); the endpoints that take
//! client credentials (`token`, `sso_userinfo`) per authenticated client, with
//! failed authentications counted per (client, address) and requests naming no
//! registered client per address — so nobody can spend a genuine client's allowance
//! by claiming its id; and the admin API, console sign-in and `/metrics` per client
//! address (token guessing). GCRA buckets from `governor`: a client may spend a
//! minute's allowance at once, then one request per 1/n minute.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::core::client_ip::client_ip;
use crate::telemetry;

/// One limit; `None` when configured off (0).
pub struct Limit {
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl Limit {
    pub fn per_minute(name: &'static str, per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Limit { name, limiter }
    }

    /// `Err(wait)` when `key` is over its limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            telemetry::rate_limited(self.name);
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    /// Forgets clients that are back under their limit (memory stays bounded).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// A limit on failures: a key that has spent its allowance is refused *before* its
/// next attempt is checked (so guessing stops), until the bucket refills. governor
/// cannot look at a bucket without spending from it, so the verdict of the last
/// failure is remembered.
pub struct FailureLimit {
    limit: Limit,
    blocked: moka::sync::Cache<String, Instant>,
}

impl FailureLimit {
    pub fn per_minute(name: &'static str, per_minute: u32) -> Self {
        let blocked = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build();
        FailureLimit { limit: Limit::per_minute(name, per_minute), blocked }
    }

    /// `Err(wait)` while `key` is refused.
    pub fn check_blocked(&self, key: &str) -> Result<(), Duration> {
        match self.blocked.get(key).map(|until| until.saturating_duration_since(Instant::now())) {
            Some(wait) if !wait.is_zero() => {
                telemetry::rate_limited(self.limit.name);
                Err(wait)
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `key`; `Err(wait)` when that was one too many.
    pub fn record_failure(&self, key: &str) -> Result<(), Duration> {
        self.limit.check(key).inspect_err(|wait| self.blocked.insert(key.to_owned(), Instant::now() + *wait))
    }
}

pub struct RateLimits {
    pub authorize: Limit,
    /// Front-channel logouts, by address: they carry no secret, so guessing is
    /// slowed like sign-ins (with the same allowance, counted apart).
    pub frontchannel_logout: Limit,
    /// Requests of an authenticated client, by client id (public clients, which
    /// anyone can name, by client id and address).
    pub token: Limit,
    /// Failed client authentications of a registered client, by client and address.
    pub client_auth_failures: FailureLimit,
    /// Requests naming no registered client (or no client at all), by address.
    pub unattributed_clients: FailureLimit,
    pub admin: Limit,
    /// Wrong SCIM bearer tokens, by address and directory (token guessing), with the
    /// admin API's allowance.
    pub scim_token_failures: FailureLimit,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(authorize: u32, token: u32, admin: u32, trusted_proxies: Vec<IpNet>) -> Self {
        RateLimits {
            authorize: Limit::per_minute("authorize", authorize),
            frontchannel_logout: Limit::per_minute("frontchannel_logout", authorize),
            token: Limit::per_minute("token", token),
            client_auth_failures: FailureLimit::per_minute("client_auth_failures", token),
            unattributed_clients: FailureLimit::per_minute("unattributed_clients", token),
            admin: Limit::per_minute("admin", admin),
            scim_token_failures: FailureLimit::per_minute("scim_token_failures", admin),
            trusted_proxies,
        }
    }

    /// The client's address, as a limit key.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> String {
        let forwarded: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        client_ip(peer, &forwarded, &self.trusted_proxies).to_string()
    }

    pub fn forget_idle(&self) {
        self.authorize.forget_idle();
        self.frontchannel_logout.forget_idle();
        self.token.forget_idle();
        self.client_auth_failures.limit.forget_idle();
        self.unattributed_clients.limit.forget_idle();
        self.admin.forget_idle();
        self.scim_token_failures.limit.forget_idle();
    }
}

/// `Retry-After` in whole seconds, at least one.
pub fn retry_after(wait: Duration) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)))]
}
