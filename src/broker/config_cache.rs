//! Read-mostly configuration (applications, organizations, connections) held in
//! memory for sign-ins, so the hot path does not ask the database for what rarely
//! changes, however rarely a tenant signs in.
//!
//! An entry lives until what it was read from changes, not for a fixed time: each
//! committed change names what it makes stale ([`Stale`]), and a replica forgets just
//! that — at once for its own writes (the store calls [`ConfigCache::forget`] before
//! the write returns), and when it hears of another replica's. While a replica cannot
//! hear the others (its PostgreSQL listener is reconnecting), it trusts no entry older
//! than [`UNHEARD_TTL`]. Memory is bounded by the configured number of entries per kind
//! (`--config-cache-entries`).
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
    /// The epoch when its read began.
    began: u64,
    read_at: Timestamp,
}

struct Generations {
    stripes: Box<[AtomicU64]>,
    absent: AtomicU64,
    /// Bumped by every change, before the generation it changes: a read that sees
    /// the same epoch before and after it cannot have missed a change.
    epoch: AtomicU64,
    /// Whether every other replica's change reaches this one: always with SQLite, with
    /// PostgreSQL while listening; not until the change listener has said so.
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

/// moka's default policy (TinyLFU), not LRU: lookups of what does not exist are cached
/// too, and their keys come from unauthenticated requests (client ids, connection
/// ids), so under LRU a stream of made-up ones would push every tenant out. TinyLFU
/// admits a key once it is asked for more often than what it would evict.
fn cache<V: Clone + Send + Sync + 'static>(entries: u64) -> Cache<String, Stamped<V>> {
    Cache::builder().max_capacity(entries).build()
}

/// moka shares one load among concurrent callers and hands errors back in an Arc.
fn unshare(e: Arc<StoreError>) -> StoreError {
    Arc::try_unwrap(e).unwrap_or_else(|e| StoreError::Corrupt(e.to_string()))
}

impl ConfigCache {
    /// Holds at most `entries` of each kind (applications, organizations, connections…).
    pub fn new(clock: Arc<dyn Clock>, entries: u64) -> Self {
        ConfigCache {
            applications: cache(entries),
            organizations: cache(entries),
            domains: cache(entries),
            connections: cache(entries),
            org_connections: cache(entries),
            secrets: cache(entries),
            entitlements: cache(entries),
            generations: Arc::new(Generations {
                stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
                absent: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                hearing: AtomicBool::new(false),
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

    /// Forgets every entry (when changes may have been missed). Every generation moves,
    /// so that not even a read finishing as this runs is kept.
    pub fn forget_everything(&self) {
        let g = &self.generations;
        g.epoch.fetch_add(1, SeqCst);
        for generation in g.stripes.iter().chain([&g.absent]) {
            generation.fetch_add(1, SeqCst);
        }
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

    /// The cached value of `key`, or else what `load` reads, cached under the
    /// generation of the slot `slot_of` gives it. Every change forgotten before the
    /// call shows in its answer.
    async fn get<V, F>(
        &self,
        cache: &Cache<String, Stamped<V>>,
        key: String,
        slot_of: impl Fn(&V) -> Slot,
        load: impl Fn() -> F,
    ) -> StoreResult<V>
    where
        V: Clone + Send + Sync + 'static,
        F: std::future::Future<Output = StoreResult<V>>,
    {
        let entered = self.generations.epoch.load(SeqCst);
        if let Some(hit) = cache.get(&key).await {
            if self.is_current(&hit, slot_of(&hit.value)) {
                return Ok(hit.value);
            }
            cache.invalidate(&key).await;
        }
        // Concurrent misses of one key share one read...
        let shared = cache.try_get_with(key.clone(), self.read(load(), &slot_of)).await.map_err(unshare)?;
        if shared.began >= entered || self.is_current(&shared, slot_of(&shared.value)) {
            return Ok(shared.value);
        }
        // ...unless it began before a change this call must see.
        let own = self.read(load(), &slot_of).await?;
        cache.insert(key, own.clone()).await;
        Ok(own.value)
    }

    /// One read from the store, stamped with the generation it was read under (none if
    /// anything was forgotten meanwhile).
    async fn read<V>(
        &self,
        load: impl std::future::Future<Output = StoreResult<V>>,
        slot_of: &impl Fn(&V) -> Slot,
    ) -> StoreResult<Stamped<V>> {
        let (began, read_at) = (self.generations.epoch.load(SeqCst), self.clock.now());
        let value = load.await?;
        let generation = self.generations.of(slot_of(&value)).load(SeqCst);
        let unchanged = self.generations.epoch.load(SeqCst) == began;
        Ok(Stamped { value, stamp: unchanged.then_some(generation), began, read_at })
    }

    pub async fn application(&self, store: &dyn Store, client_id: &str) -> StoreResult<Option<(Application, String)>> {
        let slot = Slot::of(Scope::Application(client_id));
        self.get(&self.applications, client_id.to_owned(), move |_| slot, || store.application_by_client_id(client_id)).await
    }

    pub async fn organization(&self, store: &dyn Store, id_or_slug: &str) -> StoreResult<Option<Organization>> {
        self.get(&self.organizations, id_or_slug.to_owned(), Slot::of_organization, || store.find_organization(id_or_slug)).await
    }

    pub async fn organization_by_domain(&self, store: &dyn Store, domain: &str) -> StoreResult<Option<Organization>> {
        self.get(&self.domains, domain.to_ascii_lowercase(), Slot::of_organization, || store.organization_by_domain(domain)).await
    }

    pub async fn connection(&self, store: &dyn Store, id: &str) -> StoreResult<Option<Connection>> {
        let slot = |c: &Option<Connection>| Slot::of(c.as_ref().map_or(Scope::Absent, |c| Scope::Organization(&c.organization_id)));
        self.get(&self.connections, id.to_owned(), slot, || store.get_connection(id)).await
    }

    /// Up to two of the organization's connections (enough to know whether it has one).
    pub async fn organization_connections(&self, store: &dyn Store, organization_id: &str) -> StoreResult<Vec<Connection>> {
        let page = Page { limit: 2, cursor: None };
        let load = || async { store.list_connections(organization_id, &page).await };
        let slot = Slot::of(Scope::Organization(organization_id));
        self.get(&self.org_connections, organization_id.to_owned(), move |_| slot, load).await
    }

    pub async fn entitlements(&self, store: &dyn Store, organization_id: &str) -> StoreResult<Entitlements> {
        let load = || async { store.entitlements(organization_id).await.map(|(e, _)| e) };
        let slot = Slot::of(Scope::Organization(organization_id));
        self.get(&self.entitlements, organization_id.to_owned(), move |_| slot, load).await
    }

    pub async fn client_secret(&self, store: &dyn Store, connection: &Connection) -> StoreResult<String> {
        let slot = Slot::of(Scope::Organization(&connection.organization_id));
        self.get(&self.secrets, connection.id.clone(), move |_| slot, || store.connection_client_secret(&connection.id)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::core::clock::TestClock;

    /// A cache of one process, which has nothing to hear.
    fn cache() -> (ConfigCache, Arc<TestClock>) {
        let clock = Arc::new(TestClock::at(crate::core::now()));
        let cache = ConfigCache::new(clock.clone(), 1_000);
        cache.set_hearing(true);
        (cache, clock)
    }

    /// Reads `key` of the entitlements cache under `scope`, counting loads.
    async fn read(cache: &ConfigCache, key: &str, scope: Scope<'_>, loads: &AtomicUsize) -> Entitlements {
        let load = || async {
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
        let racing = || async {
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
    async fn a_lookup_after_a_change_does_not_share_a_read_from_before_it() {
        let (cache, _) = cache();
        let (a, _) = apart();
        let slot = Slot::of(Scope::Organization(a));
        let (started, release) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
        let before = cache.get(
            &cache.entitlements,
            a.to_owned(),
            move |_| slot,
            || async {
                started.notify_one();
                release.notified().await;
                Ok(Entitlements { sso: true, ..Entitlements::default() })
            },
        );
        let after = async {
            started.notified().await;
            cache.forget(&Stale::Organization(a.into()));
            let after = cache.get(
                &cache.entitlements,
                a.to_owned(),
                move |_| slot,
                || async { Ok(Entitlements { sso: false, ..Entitlements::default() }) },
            );
            // Released once `after` waits on the read already under way.
            let release = async {
                tokio::task::yield_now().await;
                release.notify_one();
            };
            tokio::join!(after, release).0
        };
        let (before, after) = tokio::join!(before, after);
        assert!(before.unwrap().sso, "the read that began before the change answers its caller");
        assert!(!after.unwrap().sso, "what began after the change reads after it");
        let loads = AtomicUsize::new(0);
        assert!(!read(&cache, a, Scope::Organization(a), &loads).await.sso, "and that is what stays cached");
        assert_eq!(loads.load(SeqCst), 0);
    }

    #[tokio::test]
    async fn forgetting_everything_also_drops_a_read_finishing_meanwhile() {
        let (cache, _) = cache();
        let (a, _) = apart();
        let slot = Slot::of(Scope::Organization(a));
        let stamped = cache.read(async { Ok(Entitlements::default()) }, &move |_: &Entitlements| slot).await.unwrap();
        cache.forget_everything();
        // moka keeps what is inserted after invalidate_all; the generation does not.
        cache.entitlements.insert(a.to_owned(), stamped).await;
        let loads = AtomicUsize::new(0);
        read(&cache, a, Scope::Organization(a), &loads).await;
        assert_eq!(loads.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn each_lookup_follows_the_organization_or_application_it_was_read_from() {
        let scene = crate::broker::testkit::Scene::new().await;
        let (store, c, app) = (scene.broker.store.as_ref(), &scene.connection, &scene.app);
        let org_id = c.organization_id.clone();
        // A cache of its own, which the store's writes do not tell: what it keeps
        // through a forget shows where each lookup's entries are stamped.
        let cache = ConfigCache::new(scene.clock.clone(), 1_000);
        cache.set_hearing(true);
        let read_all = || async {
            let (by_slug, by_id) = (cache.organization(store, "acme").await, cache.organization(store, &org_id).await);
            (
                cache.application(store, &app.client_id).await.unwrap().unwrap().0.name,
                [by_slug, by_id, cache.organization_by_domain(store, "ACME.test").await].map(|o| o.unwrap().unwrap().name),
                [
                    cache.connection(store, &c.id).await.unwrap().unwrap(),
                    cache.organization_connections(store, &org_id).await.unwrap().remove(0),
                ]
                .map(|c| c.name),
                cache.entitlements(store, &org_id).await.unwrap().sso,
                cache.client_secret(store, c).await.unwrap(),
            )
        };
        let before = read_all().await;
        let actor = crate::core::audit::Actor("test".into());
        let rename_app = Box::new(|a: &mut Application| {
            a.name = "App 2".into();
            Ok(())
        });
        store.update_application(&app.id, rename_app, &actor).await.unwrap();
        let rename_org = Box::new(|o: &mut Organization| {
            o.name = "Acme 2".into();
            Ok(())
        });
        store.update_organization(&org_id, rename_org, &actor).await.unwrap();
        let edit = Box::new(|c: &mut Connection| {
            c.name = "Fake 2".into();
            Ok(Some("secret 2".into()))
        });
        store.update_connection(&c.id, edit, &actor).await.unwrap();
        store.put_entitlements(&org_id, &Entitlements { sso: false, ..Entitlements::default() }, &actor).await.unwrap();
        assert_eq!(read_all().await, before, "all of it cached");

        cache.forget(&Stale::Application(app.client_id.clone()));
        let (application, ..) = read_all().await;
        assert_eq!(application, "App 2");
        if Slot::of(Scope::Application(&app.client_id)) != Slot::of(Scope::Organization(&org_id)) {
            assert_eq!(read_all().await.1, before.1, "the organization's entries stay");
        }

        cache.forget(&Stale::Organization(org_id.clone()));
        let after = read_all().await;
        assert_eq!(after.1, ["Acme 2"; 3].map(String::from));
        assert_eq!(after.2, ["Fake 2"; 2].map(String::from));
        assert_eq!((after.3, after.4.as_str()), (false, "secret 2"));
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
