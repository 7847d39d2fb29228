//! Cached provider metadata and signing keys, per identity provider.
//!
//! Logins must not wait on an IdP's discovery document or JWKS each time, yet must
//! follow its changes: entries live as long as the IdP's `Cache-Control` says
//! (bounded), are refreshed in the background before they expire, are served stale
//! for a grace period if the IdP is briefly down, and an unknown `kid` forces one
//! (rate-limited) JWKS refetch so key rotation just works.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use serde_json::Value;

use super::metadata::{issuer_matches, usable_signing_keys, ProviderMetadata};
use super::{IdpClient, UpstreamError};
use crate::sync;

const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// How long a stale entry may still be served while its IdP fails to answer.
const STALE_GRACE: Duration = Duration::from_secs(3600);
/// At most one forced JWKS refetch per IdP in this interval.
const FORCED_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

struct Entry<T> {
    value: Arc<T>,
    fetched: Instant,
    ttl: Duration,
}

impl<T> Entry<T> {
    fn age(&self) -> Duration {
        self.fetched.elapsed()
    }
}

fn ttl(max_age: Option<Duration>) -> Duration {
    max_age.unwrap_or(DEFAULT_TTL).clamp(MIN_TTL, MAX_TTL)
}

/// Each cache holds at most the configured number of IdPs' entries, the least
/// recently used evicted first (an evicted IdP's next sign-in fetches again), and
/// nothing past the time it could still be served. LRU, not moka's default
/// admission, which could keep turning away a new tenant's IdP when full.
fn bounded<V: Clone + Send + Sync + 'static>(max_idps: u64, ttl: Duration) -> Cache<String, V> {
    Cache::builder().max_capacity(max_idps).eviction_policy(EvictionPolicy::lru()).time_to_live(ttl).build()
}

#[derive(Clone)]
pub struct Providers {
    client: IdpClient,
    metadata: Cache<String, Arc<Entry<ProviderMetadata>>>,
    jwks: Cache<String, Arc<Entry<Vec<Jwk>>>>,
    forced: Cache<String, Instant>,
    /// Serialises the forced-refetch check and its record.
    forcing: Arc<Mutex<()>>,
}

impl Providers {
    pub fn new(client: IdpClient, max_idps: u64) -> Self {
        Providers {
            client,
            metadata: bounded(max_idps, MAX_TTL + STALE_GRACE),
            jwks: bounded(max_idps, MAX_TTL + STALE_GRACE),
            forced: bounded(max_idps, FORCED_REFETCH_INTERVAL),
            forcing: Default::default(),
        }
    }

    pub fn client(&self) -> &IdpClient {
        &self.client
    }

    /// The provider's metadata, checked to be usable for logins.
    pub async fn metadata(&self, discovery_url: &str) -> Result<Arc<ProviderMetadata>, UpstreamError> {
        let cached = self.lookup(&self.metadata, discovery_url, |this, url| async move {
            if let Err(e) = this.fetch_metadata(&url).await {
                tracing::warn!(discovery_url = %url, error = %e, "background refresh of provider metadata failed");
            }
        });
        if let Some((value, fresh)) = &cached {
            if *fresh {
                return Ok(value.clone());
            }
        }
        match self.fetch_metadata(discovery_url).await {
            Ok(v) => Ok(v),
            Err(e) => cached.filter(|_| self.within_grace(&self.metadata, discovery_url)).map(|(v, _)| v).ok_or(e),
        }
    }

    async fn fetch_metadata(&self, discovery_url: &str) -> Result<Arc<ProviderMetadata>, UpstreamError> {
        let (m, max_age): (ProviderMetadata, _) = self.client.get_json_with_max_age(discovery_url).await?;
        if !issuer_matches(discovery_url, &m.issuer) {
            return Err(UpstreamError::Malformed(format!("the discovery document's issuer `{}` does not match its URL", m.issuer)));
        }
        if m.authorization_endpoint.is_none() || m.token_endpoint.is_none() || m.jwks_uri.is_none() {
            return Err(UpstreamError::Malformed("the discovery document lacks authorization_endpoint, token_endpoint or jwks_uri".into()));
        }
        let value = Arc::new(m);
        self.store(&self.metadata, discovery_url, value.clone(), ttl(max_age));
        Ok(value)
    }

    /// The provider's usable signing keys. `force` refetches (at most once per
    /// interval), for a token signed with a key not seen before.
    pub async fn signing_keys(&self, jwks_uri: &str, force: bool) -> Result<Arc<Vec<Jwk>>, UpstreamError> {
        let cached = self.lookup(&self.jwks, jwks_uri, |this, uri| async move {
            if let Err(e) = this.fetch_jwks(&uri).await {
                tracing::warn!(jwks_uri = %uri, error = %e, "background refresh of provider keys failed");
            }
        });
        let may_force = force && self.may_force(jwks_uri);
        if let Some((value, fresh)) = &cached {
            if *fresh && !may_force {
                return Ok(value.clone());
            }
        }
        match self.fetch_jwks(jwks_uri).await {
            Ok(v) => Ok(v),
            Err(e) => cached.filter(|_| self.within_grace(&self.jwks, jwks_uri)).map(|(v, _)| v).ok_or(e),
        }
    }

    async fn fetch_jwks(&self, jwks_uri: &str) -> Result<Arc<Vec<Jwk>>, UpstreamError> {
        let (doc, max_age): (Value, _) = self.client.get_json_with_max_age(jwks_uri).await?;
        let value = Arc::new(usable_signing_keys(&doc)?);
        self.store(&self.jwks, jwks_uri, value.clone(), ttl(max_age));
        Ok(value)
    }

    /// The discovery document as it is now, for a caller whose copy names an
    /// endpoint that seems gone: read again at once, at most once per interval;
    /// within the interval, the copy that read left in the cache. `None` if the
    /// read fails.
    pub async fn current_metadata(&self, discovery_url: &str) -> Option<Arc<ProviderMetadata>> {
        if !self.may_force(discovery_url) {
            return self.metadata(discovery_url).await.ok();
        }
        match self.fetch_metadata(discovery_url).await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(discovery_url, error = %e, "refetching provider metadata failed");
                None
            }
        }
    }

    /// Whether a forced refetch of `key` is allowed now (and, if so, records it).
    fn may_force(&self, key: &str) -> bool {
        let _one_at_a_time = sync::lock(&self.forcing);
        let allowed = self.forced.get(key).is_none_or(|t| t.elapsed() >= FORCED_REFETCH_INTERVAL);
        if allowed {
            self.forced.insert(key.to_owned(), Instant::now());
        }
        allowed
    }

    /// A cached value and whether it is still fresh; past three quarters of its
    /// life `refresh` is started in the background, so logins rarely meet an
    /// expired entry.
    fn lookup<T, F, Fut>(&self, map: &Cache<String, Arc<Entry<T>>>, key: &str, refresh: F) -> Option<(Arc<T>, bool)>
    where
        T: Send + Sync + 'static,
        F: FnOnce(Providers, String) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let e = map.get(key)?;
        let (value, age, ttl) = (e.value.clone(), e.age(), e.ttl);
        if age >= ttl * 3 / 4 && age < ttl {
            tokio::spawn(refresh(self.clone(), key.to_owned()));
        }
        Some((value, age < ttl))
    }

    fn within_grace<T: Send + Sync + 'static>(&self, map: &Cache<String, Arc<Entry<T>>>, key: &str) -> bool {
        map.get(key).is_some_and(|e| e.age() < e.ttl + STALE_GRACE)
    }

    fn store<T: Send + Sync + 'static>(&self, map: &Cache<String, Arc<Entry<T>>>, key: &str, value: Arc<T>, ttl: Duration) {
        map.insert(key.to_owned(), Arc::new(Entry { value, fetched: Instant::now(), ttl }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_hold_at_most_the_configured_number_of_idps() {
        let client = IdpClient::new(Default::default(), Duration::from_secs(1), Default::default(), 1024, 8).unwrap();
        let providers = Providers::new(client, 8);
        for i in 0..100 {
            providers.store(&providers.jwks, &format!("https://idp{i}.test/jwks"), Arc::new(vec![]), DEFAULT_TTL);
            providers.may_force(&format!("https://idp{i}.test/jwks"));
        }
        providers.jwks.run_pending_tasks();
        providers.forced.run_pending_tasks();
        assert!(providers.jwks.entry_count() <= 8, "{}", providers.jwks.entry_count());
        assert!(providers.forced.entry_count() <= 8, "{}", providers.forced.entry_count());
        // The latest stays: it is what the next sign-in needs.
        assert!(providers.jwks.contains_key("https://idp99.test/jwks"));
    }

    #[test]
    fn ttls_are_bounded() {
        assert_eq!(ttl(None), DEFAULT_TTL);
        assert_eq!(ttl(Some(Duration::ZERO)), MIN_TTL);
        assert_eq!(ttl(Some(Duration::from_secs(7 * 24 * 3600))), MAX_TTL);
        assert_eq!(ttl(Some(Duration::from_secs(600))), Duration::from_secs(600));
    }
}
