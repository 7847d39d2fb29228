//! Abuse limits on the endpoints worth hammering: `authorize` per client address
//! (each request costs an IdP discovery and a sealed state), `token` per client id
//! (code guessing, secret guessing), and the admin API and console sign-in per
//! client address (token guessing). GCRA buckets from `governor`: a client may
//! spend a minute's allowance at once, then one request per 1/n minute.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

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

pub struct RateLimits {
    pub authorize: Limit,
    pub token: Limit,
    pub admin: Limit,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(authorize: u32, token: u32, admin: u32, trusted_proxies: Vec<IpNet>) -> Self {
        RateLimits {
            authorize: Limit::per_minute("authorize", authorize),
            token: Limit::per_minute("token", token),
            admin: Limit::per_minute("admin", admin),
            trusted_proxies,
        }
    }

    /// The client's address, as a limit key.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> String {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        client_ip(peer, forwarded, &self.trusted_proxies).to_string()
    }

    pub fn forget_idle(&self) {
        self.authorize.forget_idle();
        self.token.forget_idle();
        self.admin.forget_idle();
    }
}

/// `Retry-After` in whole seconds, at least one.
pub fn retry_after(wait: Duration) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)))]
}
