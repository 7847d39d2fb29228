//! Outbound HTTP under the SSRF guard: every call ssogate makes to an address it was
//! given (an IdP's discovery URL by a customer admin, an application's back-channel
//! logout URI by an operator) goes through a client that follows no redirects, uses
//! no proxy from the environment, and connects only to addresses the
//! [`NetworkPolicy`] allows — checked after resolution, so a public name pointing at
//! a private address is refused too. IP literals skip the resolver, so callers check
//! URLs with [`NetworkPolicy::check_url`] before sending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Name, Resolve, Resolving};
use url::Url;

use crate::core::network::NetworkPolicy;

/// Resolves names with the system resolver, then drops every address the policy refuses.
struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|a| policy.allows_ip(a.ip())).collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves only to addresses ssogate may not contact (non-public network)").into();
                return Err(err);
            }
            Ok(Box::new(allowed.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// A client that reaches only what `policy` allows, within `timeout` per request.
pub fn guarded_client(policy: Arc<NetworkPolicy>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("ssogate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
}

/// The client that delivers back-channel logout tokens to applications.
#[derive(Clone)]
pub struct AppClient {
    pub http: reqwest::Client,
    pub policy: Arc<NetworkPolicy>,
}

impl AppClient {
    pub fn new(policy: NetworkPolicy, timeout: Duration) -> reqwest::Result<Self> {
        let policy = Arc::new(policy);
        Ok(AppClient { http: guarded_client(policy.clone(), timeout)?, policy })
    }

    /// Why `uri` may not be called, if it may not (scheme, credentials, IP literal).
    pub fn refusal(&self, uri: &str) -> Option<String> {
        match Url::parse(uri) {
            Ok(url) => self.policy.check_url("uri", &url).err().map(|e| e.message),
            Err(e) => Some(format!("not a URL: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn resolves(dev: bool, host: &str) -> Result<Vec<SocketAddr>, String> {
        let resolver = GuardedResolver { policy: Arc::new(NetworkPolicy::for_idps(dev, vec![])) };
        let name: Name = host.parse().unwrap();
        resolver.resolve(name).await.map(|a| a.collect()).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let err = resolves(false, "localhost").await.unwrap_err();
        assert!(err.contains("non-public"), "{err}");
        let ok = resolves(true, "localhost").await.unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn application_uris_are_checked_like_idp_urls() {
        let client = AppClient::new(NetworkPolicy::for_applications(false, vec![]), Duration::from_secs(1)).unwrap();
        assert!(client.refusal("https://app.example.com/bcl").is_none());
        let refused = client.refusal("https://169.254.169.254/latest").unwrap();
        assert!(refused.contains("--allow-app-network"), "{refused}");
        assert!(client.refusal("http://app.example.com/bcl").is_some());
        assert!(client.refusal("not a url").is_some(), "fails closed");
        let allowed = NetworkPolicy::for_applications(false, vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(AppClient::new(allowed, Duration::from_secs(1)).unwrap().refusal("https://10.1.2.3/bcl").is_none());
    }
}
