//! Read-mostly configuration (applications, organizations, connections) held in
//! memory for logins, so the hot path does not ask the database for what rarely
//! changes. Admin changes made through this process clear it at once; changes
//! made through another replica are seen within the TTL.

use std::time::Duration;

use moka::future::Cache;

use crate::core::application::Application;
use crate::core::connection::Connection;
use crate::core::entitlements::Entitlements;
use crate::core::organization::Organization;
use crate::store::{Page, Store, StoreError, StoreResult};

const CONFIG_TTL: Duration = Duration::from_secs(10);
const CAPACITY: u64 = 100_000;

#[derive(Clone)]
pub struct ConfigCache {
    applications: Cache<String, Option<(Application, String)>>,
    organizations: Cache<String, Option<Organization>>,
    domains: Cache<String, Option<Organization>>,
    connections: Cache<String, Option<Connection>>,
    org_connections: Cache<String, Vec<Connection>>,
    secrets: Cache<String, String>,
    entitlements: Cache<String, Entitlements>,
}

fn cache<V: Clone + Send + Sync + 'static>() -> Cache<String, V> {
    Cache::builder().max_capacity(CAPACITY).time_to_live(CONFIG_TTL).build()
}

/// moka shares one load among concurrent callers and hands errors back in an Arc.
fn unshare(e: std::sync::Arc<StoreError>) -> StoreError {
    std::sync::Arc::try_unwrap(e).unwrap_or_else(|e| StoreError::Corrupt(e.to_string()))
}

impl Default for ConfigCache {
    fn default() -> Self {
        ConfigCache {
            applications: cache(),
            organizations: cache(),
            domains: cache(),
            connections: cache(),
            org_connections: cache(),
            secrets: cache(),
            entitlements: cache(),
        }
    }
}

impl ConfigCache {
    /// Forgets everything (after any admin change).
    pub fn clear(&self) {
        self.applications.invalidate_all();
        self.organizations.invalidate_all();
        self.domains.invalidate_all();
        self.connections.invalidate_all();
        self.org_connections.invalidate_all();
        self.secrets.invalidate_all();
        self.entitlements.invalidate_all();
    }

    pub async fn application(&self, store: &dyn Store, client_id: &str) -> StoreResult<Option<(Application, String)>> {
        self.applications.try_get_with(client_id.to_owned(), store.application_by_client_id(client_id)).await.map_err(unshare)
    }

    pub async fn organization(&self, store: &dyn Store, id_or_slug: &str) -> StoreResult<Option<Organization>> {
        self.organizations.try_get_with(id_or_slug.to_owned(), store.find_organization(id_or_slug)).await.map_err(unshare)
    }

    pub async fn organization_by_domain(&self, store: &dyn Store, domain: &str) -> StoreResult<Option<Organization>> {
        self.domains.try_get_with(domain.to_ascii_lowercase(), store.organization_by_domain(domain)).await.map_err(unshare)
    }

    pub async fn connection(&self, store: &dyn Store, id: &str) -> StoreResult<Option<Connection>> {
        self.connections.try_get_with(id.to_owned(), store.get_connection(id)).await.map_err(unshare)
    }

    /// Up to two of the organization's connections (enough to know whether it has one).
    pub async fn organization_connections(&self, store: &dyn Store, organization_id: &str) -> StoreResult<Vec<Connection>> {
        let page = Page { limit: 2, cursor: None };
        self.org_connections
            .try_get_with(organization_id.to_owned(), async move { store.list_connections(organization_id, &page).await })
            .await
            .map_err(unshare)
    }

    pub async fn entitlements(&self, store: &dyn Store, organization_id: &str) -> StoreResult<Entitlements> {
        let load = async move { store.entitlements(organization_id).await.map(|(e, _)| e) };
        self.entitlements.try_get_with(organization_id.to_owned(), load).await.map_err(unshare)
    }

    pub async fn client_secret(&self, store: &dyn Store, connection_id: &str) -> StoreResult<String> {
        self.secrets.try_get_with(connection_id.to_owned(), store.connection_client_secret(connection_id)).await.map_err(unshare)
    }
}
