//! The directory's admin writes, each one unit: the store commits the write with its
//! audit row, the re-sync jobs it calls for and the notice to other replicas in one
//! transaction; then this replica forgets its cached configuration and wakes its
//! sync worker (both in memory, so a crash loses nothing they stand for). Handlers
//! write through these, never through the store.
//!
//! Deleting users, connections and organizations ends their sessions first, exactly
//! as a revocation does — codes and tokens revoked, other replicas told at once,
//! back-channel logout sent to the applications — so nothing deleted keeps working
//! for the minutes a cached token would otherwise live.

use super::Broker;
use crate::core::application::Application;
use crate::core::audit::Actor;
use crate::core::connection::Connection;
use crate::core::entitlements::Entitlements;
use crate::core::group::{Group, NewGroup};
use crate::core::organization::Organization;
use crate::core::user::{User, UserProfile, UserView};
use crate::store::{Edit, SessionFilter, StoreError, StoreResult};

/// Admin writes that need nothing before the store's: each forwards to the store's
/// write of the same name, then [`Broker::changed`].
macro_rules! admin_writes {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        impl Broker {
            $(
                pub async fn $name(&self, $($arg: $ty),*) -> StoreResult<$ret> {
                    let written = self.store.$name($($arg),*).await?;
                    self.changed();
                    Ok(written)
                }
            )*
        }
    };
}

admin_writes! {
    fn create_organization(org: Organization, slug_given: bool, actor: &Actor) -> Organization;
    fn update_organization(id: &str, edit: Edit<'_, Organization, ()>, actor: &Actor) -> Organization;
    fn put_entitlements(organization_id: &str, e: &Entitlements, actor: &Actor) -> Entitlements;
    fn create_connection(c: Connection, client_secret: &str, actor: &Actor) -> Connection;
    fn update_connection(id: &str, edit: Edit<'_, Connection, Option<String>>, actor: &Actor) -> Connection;
    fn create_application(app: Application, secret_hash: &str, actor: &Actor) -> Application;
    fn update_application(id: &str, edit: Edit<'_, Application, ()>, actor: &Actor) -> Application;
    fn delete_application(id: &str, actor: &Actor) -> ();
    fn set_application_secret(id: &str, secret_hash: &str, actor: &Actor) -> Application;
    fn create_user(organization_id: &str, profile: UserProfile, groups: Vec<String>, actor: &Actor) -> UserView;
    fn update_user(id: &str, edit: Edit<'_, User, Option<Vec<String>>>, actor: &Actor) -> UserView;
    fn create_group(organization_id: &str, group: NewGroup, actor: &Actor) -> Group;
    fn update_group(id: &str, edit: Edit<'_, Group, ()>, actor: &Actor) -> Group;
    fn delete_group(id: &str, actor: &Actor) -> ();
}

impl Broker {
    pub async fn delete_user(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.store.get_user(id).await?.ok_or(StoreError::NotFound("user"))?;
        self.end_sessions(SessionFilter::User(id), "user_deleted", actor).await?;
        self.store.delete_user(id, actor).await?;
        self.changed();
        Ok(())
    }

    pub async fn delete_connection(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.store.get_connection(id).await?.ok_or(StoreError::NotFound("connection"))?;
        self.end_sessions(SessionFilter::Connection(id), "connection_deleted", actor).await?;
        self.store.delete_connection(id, actor).await?;
        self.changed();
        Ok(())
    }

    /// `id`: the organization's id (not its slug).
    pub async fn delete_organization(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.end_sessions(SessionFilter::Organization(id), "organization_deleted", actor).await?;
        self.store.delete_organization(id, actor).await?;
        self.changed();
        Ok(())
    }
}

impl Broker {
    /// After a committed admin write: this replica sees it at once (other replicas
    /// heard of it from the store), and its sync worker starts on any job it queued.
    fn changed(&self) {
        self.config.clear();
        self.sync_wake.notify_one();
    }
}
