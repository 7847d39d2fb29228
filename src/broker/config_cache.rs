//! Read-mostly configuration (applications, organizations, connections) held in
//! memory for sign-ins, so the hot path does not ask the database for what rarely
//! changes, however rarely a tenant signs in.
//!
//! An entry lives until what it was read from changes, not for a fixed time: each
//! committed change names what it makes stale ([`Stale`]), and a replica forgets just
//! that — at once for its own writes (the store calls [`ConfigCache::forget`] before
//! the write returns), and when it hears of another replica's. While a replica cannot
//! hear the others (its PostgreSQL listener is reconnecting), it trusts no entry older
//! than [`UNHEARD_TTL`]. Memory is bounded by [`CAPACITY`] entries per kind.
//!
//! Forgetting is by generation, not by search: every entry is stamped, when read,
//! with the generation of its scope (its organization, or its application's client
//! ID), and a change bumps that generation, so an entry whose stamp is behind is read
//! again. Generations live in a fixed array of stripes that scopes hash onto, so they
//! take the same memory at any number of tenants; a change refreshes the few other
//! scopes sharing its stripe too, which costs them one read.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::core::application::Application;
use crate::core::clock::Clock;
use crate::core::connection::Connection;
use crate::core::entitlements::Entitlements;
use crate::core::organization::Organization;
use crate::core::Timestamp;
use crate::store::{OnChange, Page, Stale, Store, StoreError, StoreResult};

/// How long an entry is trusted while this replica may be missing other replicas'
/// changes (what every entry's lifetime was before changes were heard per key).
const UNHEARD_TTL: Duration = Duration::from_secs(10);
/// Entries per kind: room for every tenant of a large deployment.
const CAPACITY: u64 = 100_000;
/// Generation stripes (8 bytes each).
const STRIPES: usize = 16_384;

/// Which generation an entry follows.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Organization(&'a str),
    Application(&'a str),
    /// Something looked up and not found (by slug, domain or id): any change to any
    /// organization may create it.
    Absent,
}

/// Where a scope's generation is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Stripe(usize),
    Absent,
}

impl Slot {
    fn of(scope: Scope<'_>) -> Slot {
        let stripe =
            |tag: &str, key: &str| Slot::Stripe(BuildHasherDefault::<DefaultHasher>::default().hash_one((tag, key)) as usize % STRIPES);
        match scope {
            Scope::Organization(id) => stripe("organization", id),
            Scope::Application(client_id) => stripe("application", client_id),
            Scope::Absent => Slot::Absent,
        }
    }

    fn of_organization(o: &Option<Organization>) -> Slot {
        Slot::of(o.as_ref().map_or(Scope::Absent, |o| Scope::Organization(&o.id)))
    }
}

/// A cached value and what it was read under. `stamp` is `None` when a change
/// happened while it was being read: it answers the reads that waited for it, and
/// no later one.
#[derive(Clone)]
struct Stamped<V> {
    value: V,
    stamp: Option<u64>,
    read_at: Timestamp,
}

struct Generations {
    stripes: Box<[AtomicU64]>,
    absent: AtomicU64,
    /// Bumped by every change, before the generation it changes: a read that sees
    /// the same epoch before and after it cannot have missed a change.
    epoch: AtomicU64,
    /// Whether every other replica's change reaches this one (always, with SQLite).
    hearing: AtomicBool,
}

impl Generations {
    fn of(&self, slot: Slot) -> &AtomicU64 {
        match slot {
            Slot::Stripe(i) => &self.stripes[i],
            Slot::Absent => &self.absent,
        }
    }

    fn bump(&self, scope: Scope<'_>) {
        self.epoch.fetch_add(1, SeqCst);
        self.of(Slot::of(scope)).fetch_add(1, SeqCst);
    }
}

#[derive(Clone)]
pub struct ConfigCache {
    applications: Cache<String, Stamped<Option<(Application, String)>>>,
    organizations: Cache<String, Stamped<Option<Organization>>>,
    domains: Cache<String, Stamped<Option<Organization>>>,
    connections: Cache<String, Stamped<Option<Connection>>>,
    org_connections: Cache<String, Stamped<Vec<Connection>>>,
    secrets: Cache<String, Stamped<String>>,
    entitlements: Cache<String, Stamped<Entitlements>>,
    generations: Arc<Generations>,
    clock: Arc<dyn Clock>,
}

fn cache<V: Clone + Send + Sync + 'static>() -> Cache<String, Stamped<V>> {
    Cache::builder().max_capacity(CAPACITY).build()
}

/// moka shares one load among concurrent callers and hands errors back in an Arc.
fn unshare(e: Arc<StoreError>) -> StoreError {
    Arc::try_unwrap(e).unwrap_or_else(|e| StoreError::Corrupt(e.to_string()))
}

impl ConfigCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        ConfigCache {
            applications: cache(),
            organizations: cache(),
            domains: cache(),
            connections: cache(),
            org_connections: cache(),
            secrets: cache(),
            entitlements: cache(),
            generations: Arc::new(Generations {
                stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
                absent: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                hearing: AtomicBool::new(true),
            }),
            clock,
        }
    }

    /// Forgets what `stale` names.
    pub fn forget(&self, stale: &Stale) {
        match stale {
            Stale::Organization(id) => {
                self.generations.bump(Scope::Organization(id));
                self.generations.bump(Scope::Absent);
            }
            Stale::Application(client_id) => self.generations.bump(Scope::Application(client_id)),
            Stale::SigningKeys => {}
            Stale::Everything => self.forget_everything(),
        }
    }

    /// What the store runs after each of this process's own changes.
    pub fn on_own_change(&self) -> OnChange {
        let cache = self.clone();
        Arc::new(move |stale| cache.forget(stale))
    }

    /// Forgets every entry (when changes may have been missed).
    pub fn forget_everything(&self) {
        self.generations.epoch.fetch_add(1, SeqCst);
        self.applications.invalidate_all();
        self.organizations.invalidate_all();
        self.domains.invalidate_all();
        self.connections.invalidate_all();
        self.org_connections.invalidate_all();
        self.secrets.invalidate_all();
        self.entitlements.invalidate_all();
    }

    /// Whether this replica hears every other replica's changes; while it does not,
    /// entries expire after [`UNHEARD_TTL`].
    pub fn set_hearing(&self, hearing: bool) {
        self.generations.hearing.store(hearing, SeqCst);
    }

    fn is_current<V>(&self, entry: &Stamped<V>, slot: Slot) -> bool {
        let g = &self.generations;
        entry.stamp == Some(g.of(slot).load(SeqCst)) && (g.hearing.load(SeqCst) || self.clock.now() - entry.read_at < UNHEARD_TTL)
    }

    /// The cached value of `key`, or `load`'s, cached under the generation of the
    /// slot `slot_of` gives it.
    async fn get<V, F>(&self, cache: &Cache<String, Stamped<V>>, key: String, slot_of: impl Fn(&V) -> Slot, load: F) -> StoreResult<V>
    where
        V: Clone + Send + Sync + 'static,
        F: std::future::Future<Output = StoreResult<V>>,
    {
        if let Some(hit) = cache.get(&key).await {
            if self.is_current(&hit, slot_of(&hit.value)) {
                return Ok(hit.value);
            }
            cache.invalidate(&key).await;
        }
        let read = async {
            let epoch = self.generations.epoch.load(SeqCst);
            let value = load.await?;
            let generation = self.generations.of(slot_of(&value)).load(SeqCst);
            let unchanged = self.generations.epoch.load(SeqCst) == epoch;
            Ok(Stamped { value, stamp: unchanged.then_some(generation), read_at: self.clock.now() })
        };
        Ok(cache.try_get_with(key, read).await.map_err(unshare)?.value)
    }

    pub async fn application(&self, store: &dyn Store, client_id: &str) -> StoreResult<Option<(Application, String)>> {
        let slot = Slot::of(Scope::Application(client_id));
        self.get(&self.applications, client_id.to_owned(), move |_| slot, store.application_by_client_id(client_id)).await
    }

    pub async fn organization(&self, store: &dyn Store, id_or_slug: &str) -> StoreResult<Option<Organization>> {
        self.get(&self.organizations, id_or_slug.to_owned(), Slot::of_organization, store.find_organization(id_or_slug)).await
    }

    pub async fn organization_by_domain(&self, store: &dyn Store, domain: &str) -> StoreResult<Option<Organization>> {
        self.get(&self.domains, domain.to_ascii_lowercase(), Slot::of_organization, store.organization_by_domain(domain)).await
    }

    pub async fn connection(&self, store: &dyn Store, id: &str) -> StoreResult<Option<Connection>> {
        let slot = |c: &Option<Connection>| Slot::of(c.as_ref().map_or(Scope::Absent, |c| Scope::Organization(&c.organization_id)));
        self.get(&self.connections, id.to_owned(), slot, store.get_connection(id)).await
    }

    /// Up to two of the organization's connections (enough to know whether it has one).
    pub async fn organization_connections(&self, store: &dyn Store, organization_id: &str) -> StoreResult<Vec<Connection>> {
        let page = Page { limit: 2, cursor: None };
        let load = async move { store.list_connections(organization_id, &page).await };
        let slot = Slot::of(Scope::Organization(organization_id));
        self.get(&self.org_connections, organization_id.to_owned(), move |_| slot, load).await
    }

    pub async fn entitlements(&self, store: &dyn Store, organization_id: &str) -> StoreResult<Entitlements> {
        let load = async move { store.entitlements(organization_id).await.map(|(e, _)| e) };
        let slot = Slot::of(Scope::Organization(organization_id));
        self.get(&self.entitlements, organization_id.to_owned(), move |_| slot, load).await
    }

    pub async fn client_secret(&self, store: &dyn Store, connection: &Connection) -> StoreResult<String> {
        let slot = Slot::of(Scope::Organization(&connection.organization_id));
        self.get(&self.secrets, connection.id.clone(), move |_| slot, store.connection_client_secret(&connection.id)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::core::clock::TestClock;

    fn cache() -> (ConfigCache, Arc<TestClock>) {
        let clock = Arc::new(TestClock::at(crate::core::now()));
        (ConfigCache::new(clock.clone()), clock)
    }

    /// Reads `key` of the entitlements cache under `scope`, counting loads.
    async fn read(cache: &ConfigCache, key: &str, scope: Scope<'_>, loads: &AtomicUsize) -> Entitlements {
        let load = async {
            loads.fetch_add(1, SeqCst);
            Ok(Entitlements::default())
        };
        let slot = Slot::of(scope);
        cache.get(&cache.entitlements, key.to_owned(), move |_| slot, load).await.unwrap()
    }

    /// Two organizations whose generations are in different stripes.
    fn apart() -> (&'static str, &'static str) {
        let (a, b) = ("org_a", "org_b");
        assert_ne!(Slot::of(Scope::Organization(a)), Slot::of(Scope::Organization(b)));
        (a, b)
    }

    #[tokio::test]
    async fn entries_live_until_their_scope_changes_however_long_that_is() {
        let ((cache, clock), loads) = (cache(), AtomicUsize::new(0));
        let (a, b) = apart();
        read(&cache, a, Scope::Organization(a), &loads).await;
        read(&cache, b, Scope::Organization(b), &loads).await;
        clock.advance(Duration::from_secs(3600));
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 2, "an hour later, still cached");

        cache.forget(&Stale::Organization(a.into()));
        read(&cache, a, Scope::Organization(a), &loads).await;
        read(&cache, b, Scope::Organization(b), &loads).await;
        assert_eq!(loads.load(SeqCst), 3, "a's change reloads a, not b");
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 3, "and a is cached again");

        cache.forget(&Stale::Application("client".into()));
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 3, "an application's change leaves organizations be");
        cache.forget_everything();
        read(&cache, b, Scope::Organization(b), &loads).await;
        assert_eq!(loads.load(SeqCst), 4);
    }

    #[tokio::test]
    async fn what_was_not_found_is_looked_up_again_after_any_organization_changes() {
        let ((cache, _), loads) = (cache(), AtomicUsize::new(0));
        read(&cache, "new.example", Scope::Absent, &loads).await;
        read(&cache, "new.example", Scope::Absent, &loads).await;
        assert_eq!(loads.load(SeqCst), 1);
        cache.forget(&Stale::Organization("org_that_took_the_domain".into()));
        read(&cache, "new.example", Scope::Absent, &loads).await;
        assert_eq!(loads.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_that_a_change_overtook_is_not_kept() {
        let (cache, _) = cache();
        let (a, _) = apart();
        // The change commits while the read is on its way back from the database: the
        // read answers its caller but is not reused, or it would hide the change.
        let racing = async {
            cache.forget(&Stale::Organization(a.into()));
            Ok(Entitlements { sso: false, ..Entitlements::default() })
        };
        let slot = Slot::of(Scope::Organization(a));
        let value = cache.get(&cache.entitlements, a.to_owned(), move |_| slot, racing).await.unwrap();
        assert!(!value.sso);
        let loads = AtomicUsize::new(0);
        assert!(read(&cache, a, Scope::Organization(a), &loads).await.sso);
        assert_eq!(loads.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn while_other_replicas_are_not_heard_entries_are_trusted_briefly() {
        let ((cache, clock), loads) = (cache(), AtomicUsize::new(0));
        let (a, _) = apart();
        cache.set_hearing(false);
        read(&cache, a, Scope::Organization(a), &loads).await;
        clock.advance(UNHEARD_TTL / 2);
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 1);
        clock.advance(UNHEARD_TTL);
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 2, "read again once older than the TTL");
        cache.set_hearing(true);
        clock.advance(UNHEARD_TTL * 10);
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 2);
    }
}
