//! The HTTP client ssogate uses to reach identity providers: the SSRF-guarded client
//! of [`crate::outbound`] (no redirects, no proxies from the environment, every
//! resolved address checked against the [`NetworkPolicy`]), bounded response sizes,
//! and a circuit per IdP.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use url::Url;

use super::UpstreamError;
use crate::core::circuit::{Admission, Circuit, CircuitPolicy};
use crate::core::network::NetworkPolicy;
use crate::sync;
use crate::telemetry;

#[derive(Clone)]
pub struct IdpClient {
    http: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    /// One circuit per IdP (`host:port`), the least recently used forgotten past
    /// the configured number of IdPs (a forgotten circuit starts closed again).
    circuits: moka::sync::Cache<String, Arc<Mutex<Circuit>>>,
    circuit_policy: CircuitPolicy,
    /// The bound on each request, connection included.
    timeout: Duration,
    /// Discovery documents, JWKS and token answers are small; anything bigger is a
    /// misconfiguration or an attack.
    max_response_bytes: usize,
}

/// An admitted request's place in its IdP's circuit; dropping it unfinished (the
/// request was cancelled) gives the place back.
struct InFlight<'c> {
    client: &'c IdpClient,
    circuit: Arc<Mutex<Circuit>>,
    finished: bool,
}

impl InFlight<'_> {
    fn finish(mut self, failed: bool) {
        self.finished = true;
        sync::lock(&self.circuit).finish(failed, Instant::now(), &self.client.circuit_policy);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            sync::lock(&self.circuit).abandon();
        }
    }
}

impl IdpClient {
    pub fn new(
        policy: NetworkPolicy,
        timeout: Duration,
        circuit_policy: CircuitPolicy,
        max_response_bytes: usize,
        max_idps: u64,
    ) -> Result<Self, UpstreamError> {
        let policy = Arc::new(policy);
        let http = crate::outbound::guarded_client(policy.clone(), timeout).map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        let circuits = moka::sync::Cache::builder().max_capacity(max_idps).eviction_policy(moka::policy::EvictionPolicy::lru()).build();
        Ok(IdpClient { http, policy, circuits, circuit_policy, timeout, max_response_bytes })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// The longest one request to an IdP can take.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// GETs a JSON document, refusing URLs the policy forbids, non-200 answers,
    /// oversized bodies and bodies that are not the expected JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, UpstreamError> {
        Ok(self.get_json_with_max_age(url).await?.0)
    }

    /// Like [`get_json`](Self::get_json), also returning the `Cache-Control: max-age`.
    pub async fn get_json_with_max_age<T: DeserializeOwned>(&self, url: &str) -> Result<(T, Option<Duration>), UpstreamError> {
        let req = self.http.get(self.checked(url)?).header(reqwest::header::ACCEPT, "application/json");
        let (status, max_age, body) = self.send(req).await?;
        if !status.is_success() {
            return Err(UpstreamError::BadStatus(status.as_u16()));
        }
        Ok((parse(&body)?, max_age))
    }

    /// A URL ssogate may contact, or why not.
    pub fn checked(&self, url: &str) -> Result<Url, UpstreamError> {
        let parsed = Url::parse(url).map_err(|e| UpstreamError::Forbidden(format!("`{url}` is not a URL: {e}")))?;
        self.policy.check_url("url", &parsed).map_err(|e| UpstreamError::Forbidden(format!("`{url}` {}", e.message)))?;
        Ok(parsed)
    }

    /// Starts a request on the guarded client (the URL must come from [`checked`](Self::checked)).
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request and reads at most `max_response_bytes` of its body.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Option<Duration>, Vec<u8>), UpstreamError> {
        let (client, req) = req.build_split();
        let req = req.map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
        let host = req.url().host_str().unwrap_or_default().to_owned();
        let place = self.admit(&host, req.url().port_or_known_default())?;
        let started = Instant::now();
        let answer = read_body(client.execute(req).await, self.max_response_bytes).await;
        let outcome = match &answer {
            Ok((status, ..)) if status.is_success() => "ok",
            Ok(_) | Err(UpstreamError::TooLarge(_)) => "error",
            Err(_) => "unreachable",
        };
        telemetry::idp_request(&host, outcome, started.elapsed());
        // An IdP that answers, even with an error of ours (4xx), is up.
        place.finish(
            matches!(&answer, Ok((status, ..)) if status.is_server_error()) || matches!(answer, Err(UpstreamError::Unreachable(_))),
        );
        answer
    }

    /// A place for one request to the IdP at `host:port`, unless its circuit is open
    /// or it has too many requests waiting already.
    fn admit(&self, host: &str, port: Option<u16>) -> Result<InFlight<'_>, UpstreamError> {
        let shared = self.circuits.get_with(format!("{host}:{}", port.unwrap_or_default()), Default::default);
        let mut circuit = sync::lock(&shared);
        match circuit.admit(Instant::now(), &self.circuit_policy) {
            Admission::Allowed | Admission::Trial => {
                drop(circuit);
                Ok(InFlight { client: self, circuit: shared, finished: false })
            }
            Admission::Open { retry_in } => {
                telemetry::idp_refused(host, "circuit_open");
                let retry_in_secs = retry_in.as_secs().max(1);
                Err(UpstreamError::CircuitOpen { host: host.to_owned(), failures: circuit.consecutive_failures(), retry_in_secs })
            }
            Admission::Saturated => {
                telemetry::idp_refused(host, "saturated");
                Err(UpstreamError::Saturated(host.to_owned()))
            }
        }
    }
}

/// The status, `Cache-Control: max-age` and at most `max` bytes of the body.
async fn read_body(
    resp: Result<reqwest::Response, reqwest::Error>,
    max: usize,
) -> Result<(reqwest::StatusCode, Option<Duration>, Vec<u8>), UpstreamError> {
    let mut resp = resp.map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
    let status = resp.status();
    let max_age = resp.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(cache_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| UpstreamError::Unreachable(describe(&e)))? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            return Err(UpstreamError::TooLarge(max));
        }
    }
    Ok((status, max_age, body))
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(e.to_string()))
}

/// `max-age` of a Cache-Control header; `no-store`/`no-cache` count as zero.
fn cache_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            Some(Duration::ZERO)
        } else {
            d.strip_prefix("max-age=").and_then(|n| n.trim_matches('"').parse().ok()).map(Duration::from_secs)
        }
    })
}

/// A readable reason from a reqwest error, including its causes (reqwest's own
/// `Display` often says only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(cache_max_age("public, max-age=3600"), Some(Duration::from_secs(3600)));
        assert_eq!(cache_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(cache_max_age("private"), None);
    }

    #[test]
    fn circuits_are_kept_for_at_most_the_configured_number_of_idps() {
        let client = IdpClient::new(NetworkPolicy::default(), Duration::from_secs(2), CircuitPolicy::default(), 256 * 1024, 16).unwrap();
        for i in 0..200 {
            client.admit(&format!("idp{i}.test"), Some(443)).unwrap().finish(false);
        }
        client.circuits.run_pending_tasks();
        assert!(client.circuits.entry_count() <= 16, "{}", client.circuits.entry_count());
        // A request admitted before its circuit is forgotten still finishes on it.
        let place = client.admit("late.test", Some(443)).unwrap();
        client.circuits.invalidate_all();
        place.finish(true);
    }

    #[tokio::test]
    async fn ip_literal_urls_are_checked_before_any_request() {
        let client = IdpClient::new(NetworkPolicy::default(), Duration::from_secs(2), CircuitPolicy::default(), 256 * 1024, 100).unwrap();
        let err = client.get_json::<serde_json::Value>("https://169.254.169.254/latest/meta-data").await.unwrap_err();
        assert!(matches!(err, UpstreamError::Forbidden(_)), "{err}");
    }
}
