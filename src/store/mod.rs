//! Persistence behind one trait, so handlers never see SQL and the SQLite and
//! PostgreSQL back ends are interchangeable.
//!
//! The store owns encryption at rest: secrets go in and come out as plaintext, and
//! only ever touch the database sealed by the [`SecretBox`](crate::crypto::SecretBox).
//!
//! Two rules keep replicas and concurrent requests from losing updates (each has a
//! race test in `tests/it/races.rs` or `tests/it/store.rs`):
//! - Every read-modify-write of one row's state (a user's profile or groups, a
//!   connection's or organization's settings, a session's upstream tokens) is one
//!   method here, in one transaction that holds the row (`hold_row`: `FOR NO KEY UPDATE` on
//!   PostgreSQL; SQLite's `BEGIN IMMEDIATE` holds the database) or checks a version
//!   (a session's refresh lease). What it depends on (group-sync rules, the user's
//!   stored IdP groups) is read inside that transaction, never passed in from an
//!   earlier read.
//! - What an IdP hands over once and ssogate needs again (a rotated refresh token)
//!   is stored before anything else that can fail is attempted.

mod changes;
pub mod directory_sync;
mod logins;
mod sql;
pub mod webhooks;

use async_trait::async_trait;

use crate::core::application::Application;
use crate::core::audit::{Actor, AuditEvent};
use crate::core::connection::Connection;
use crate::core::entitlements::Entitlements;
use crate::core::group::{Group, NewGroup};
use crate::core::organization::Organization;
use crate::core::scim::ScimError;
use crate::core::user::{User, UserProfile, UserView};
use crate::core::ValidationError;

pub use changes::{Change, ChangeListener, Changes, Heard, OnChange, Stale};
pub use directory_sync::DirectorySync;
pub use logins::*;
#[doc(hidden)]
pub use sql::{list_statements, sign_in_statements, SQLITE_SETTINGS};
pub use sql::{Dialect, PoolSettings, SqlStore};
pub use webhooks::Webhooks;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule would be broken; `field` is the input at fault.
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The change breaks a rule of the data (e.g. deleting a default group).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A SCIM request the directory cannot take (its rules, or a version conflict).
    #[error(transparent)]
    Scim(#[from] ScimError),
    /// The database cannot be reached or is refusing work for now (restarting,
    /// overloaded, a statement timed out): worth retrying, not a bug.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Uniqueness is checked before writing, so a unique violation from the database
/// means a concurrent writer won the race: still the caller's conflict, not a 500.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return StoreError::Unavailable(e);
        }
        let Some(db) = e.as_database_error().filter(|d| d.is_unique_violation()) else {
            return StoreError::Database(e);
        };
        // SQLite names `table.column` in its message; PostgreSQL names the table and
        // the constraint (`organizations_slug_key`, `used_login_states_pkey`).
        let what = format!("{} {} {}", db.table().unwrap_or_default(), db.constraint().unwrap_or_default(), db.message());
        const FIELDS: [(&str, &str); 8] = [
            ("used_login_states", "state_hash"),
            ("slug", "slug"),
            ("domain", "domains"),
            ("email", "email"),
            ("username", "username"),
            ("idp_sub", "idp_sub"),
            ("client_id", "client_id"),
            ("name", "name"),
        ];
        let field = FIELDS.iter().find(|(needle, _)| what.contains(needle)).map_or("id", |(_, field)| field);
        StoreError::Conflict { field: field.into(), message: format!("this {field} was just taken by another change") }
    }
}

/// Errors that say nothing about the request: the connection broke or could not be
/// had, PostgreSQL is shutting down or starting (SQLSTATE classes 08, 57, 53, which
/// includes a statement timeout), or SQLite stayed busy past its timeout.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| ["08", "57", "53"].iter().any(|class| c.starts_with(class)) || c == "5"),
        _ => false,
    }
}

/// A change applied to a loaded row inside the store's transaction; it may refuse
/// with a validation error, and may hand back extra data (e.g. a new secret).
pub type Edit<'a, T, X> = Box<dyn FnOnce(&mut T) -> Result<X, ValidationError> + Send + 'a>;

/// Forward pagination by id (ids sort by creation time).
#[derive(Clone, Debug)]
pub struct Page {
    pub limit: u32,
    /// Return rows after (or, for newest-first lists, before) this id.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// `None` lists events that belong to no organization (e.g. applications).
    pub organization_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
}

/// Everything ssogate keeps: the directory, what directories push over SCIM, the
/// events outbox, the state of logins, and the news of changes between replicas.
pub trait Store: Directory + DirectorySync + Webhooks + Logins + Changes {}

impl<T: Directory + DirectorySync + Webhooks + Logins + Changes> Store for T {}

/// Organizations and what they own, applications, and the audit log.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Whether the database answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Connections open to the database, and how many of them are idle.
    fn pool_status(&self) -> (u32, usize);

    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless the key exists; returns the value in force (so that
    /// replicas starting together agree on one).
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<String>;
    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Creates the organization with its default groups and entitlements. When the
    /// slug was not chosen by the caller and is taken, a free variant is used.
    async fn create_organization(&self, org: Organization, slug_given: bool, actor: &Actor) -> StoreResult<Organization>;
    async fn find_organization(&self, id_or_slug: &str) -> StoreResult<Option<Organization>>;
    async fn list_organizations(&self, page: &Page) -> StoreResult<Vec<Organization>>;
    async fn update_organization(&self, id: &str, edit: Edit<'_, Organization, ()>, actor: &Actor) -> StoreResult<Organization>;
    async fn delete_organization(&self, id: &str, actor: &Actor) -> StoreResult<()>;

    async fn create_connection(&self, conn: Connection, client_secret: &str, actor: &Actor) -> StoreResult<Connection>;
    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>>;
    async fn list_connections(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<Connection>>;
    /// The edit may return a new client secret to store.
    async fn update_connection(&self, id: &str, edit: Edit<'_, Connection, Option<String>>, actor: &Actor) -> StoreResult<Connection>;
    async fn delete_connection(&self, id: &str, actor: &Actor) -> StoreResult<()>;
    /// The decrypted client secret, for talking to the IdP.
    async fn connection_client_secret(&self, id: &str) -> StoreResult<String>;

    async fn create_application(&self, app: Application, secret_hash: &str, actor: &Actor) -> StoreResult<Application>;
    async fn get_application(&self, id: &str) -> StoreResult<Option<Application>>;
    async fn list_applications(&self, page: &Page) -> StoreResult<Vec<Application>>;
    async fn update_application(&self, id: &str, edit: Edit<'_, Application, ()>, actor: &Actor) -> StoreResult<Application>;
    async fn delete_application(&self, id: &str, actor: &Actor) -> StoreResult<()>;
    async fn set_application_secret(&self, id: &str, secret_hash: &str, actor: &Actor) -> StoreResult<Application>;

    /// Creates a user placed by hand in the named groups of the organization.
    async fn create_user(&self, organization_id: &str, profile: UserProfile, groups: Vec<String>, actor: &Actor) -> StoreResult<UserView>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserView>>;
    async fn list_users(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<UserView>>;
    /// The edit may return group names that replace the user's memberships.
    async fn update_user(&self, id: &str, edit: Edit<'_, User, Option<Vec<String>>>, actor: &Actor) -> StoreResult<UserView>;
    async fn delete_user(&self, id: &str, actor: &Actor) -> StoreResult<()>;

    async fn create_group(&self, organization_id: &str, group: NewGroup, actor: &Actor) -> StoreResult<Group>;
    async fn get_group(&self, id: &str) -> StoreResult<Option<Group>>;
    async fn list_groups(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<Group>>;
    async fn update_group(&self, id: &str, edit: Edit<'_, Group, ()>, actor: &Actor) -> StoreResult<Group>;
    async fn delete_group(&self, id: &str, actor: &Actor) -> StoreResult<()>;

    /// The organization's licence and how many users it has.
    async fn entitlements(&self, organization_id: &str) -> StoreResult<(Entitlements, u64)>;
    async fn put_entitlements(&self, organization_id: &str, e: &Entitlements, actor: &Actor) -> StoreResult<Entitlements>;

    /// Newest first.
    async fn list_events(&self, filter: &EventFilter, page: &Page) -> StoreResult<Vec<AuditEvent>>;
}
