//! Deleting users, connections and organizations. Their sessions end first, exactly
//! as a revocation ends them — codes and tokens revoked, other replicas told at once,
//! back-channel logout sent to the applications — so nothing deleted keeps working
//! for the minutes a cached token would otherwise live.

use super::Broker;
use crate::core::audit::Actor;
use crate::store::{SessionFilter, StoreError, StoreResult};

impl Broker {
    pub async fn delete_user(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.store.get_user(id).await?.ok_or(StoreError::NotFound("user"))?;
        self.end_sessions(SessionFilter::User(id), "user_deleted", actor).await?;
        self.store.delete_user(id, actor).await
    }

    pub async fn delete_connection(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.store.get_connection(id).await?.ok_or(StoreError::NotFound("connection"))?;
        self.end_sessions(SessionFilter::Connection(id), "connection_deleted", actor).await?;
        self.store.delete_connection(id, actor).await
    }

    /// `id`: the organization's id (not its slug).
    pub async fn delete_organization(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        self.end_sessions(SessionFilter::Organization(id), "organization_deleted", actor).await?;
        self.store.delete_organization(id, actor).await
    }
}
