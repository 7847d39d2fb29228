//! The state of logins: signing keys, used login states, browser sessions,
//! authorization codes and access tokens. Every credential is looked up by its
//! SHA-256 hash, so a database leak does not hand out live sessions or tokens.

use async_trait::async_trait;
use serde_json::Value;

use super::{Page, StoreResult};
use crate::core::application::Application;
use crate::core::audit::Actor;
use crate::core::claims::IdpProfile;
use crate::core::connection::Connection;
use crate::core::group_sync::{IdpGroup, Resolution, SyncJob};
use crate::core::organization::Organization;
use crate::core::user::UserView;
use crate::core::Timestamp;

/// A private signing key, decrypted.
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    pub pkcs8: Vec<u8>,
    pub public_jwk: Value,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// A browser's signed-in session at ssogate.
#[derive(Clone, Debug)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    pub organization_id: String,
    pub connection_id: Option<String>,
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Group sync's rules, applied to the organization's existing group names.
pub type ResolveGroups<'a> = Box<dyn FnOnce(&std::collections::HashSet<&str>) -> Resolution + Send + 'a>;

/// What a sign-in completed at the IdP stores with its first grant.
#[derive(Clone, Copy, Debug)]
pub struct SignIn<'a> {
    pub session: &'a Session,
    /// Each login state is usable once; the mark lives until the state would expire.
    pub state_hash: &'a str,
    pub state_expires_at: Timestamp,
}

/// An authorization given to an application: its code, and later its access token.
#[derive(Clone, Debug)]
pub struct Grant {
    pub code_hash: String,
    pub application_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub session_hash: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: Timestamp,
    /// The user's claims as of the sign-in (what the tokens carry).
    pub claims: Value,
    pub code_expires_at: Timestamp,
}

/// What exchanging a code found.
#[derive(Debug)]
pub enum Redemption {
    /// First use: the grant, now holding the new access token, and when its
    /// session expires (`None` when the session has ended).
    Fresh(Box<Grant>, Option<Timestamp>),
    /// Second use: the token the first exchange issued is now revoked; its hash is
    /// returned so caches can drop it.
    Replayed {
        revoked_token_hashes: Vec<String>,
    },
    Unknown,
}

/// An access token as userinfo needs it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The userinfo answer (the profile as of the sign-in).
    pub claims: Value,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

/// The outcome of matching an IdP profile to the organization's users.
#[derive(Debug)]
pub enum Provisioned {
    User(Box<UserView>),
    /// Provisioning `existing_users` found nobody to match.
    NotAllowed,
    /// A new user would exceed the organization's seats (`max_users`).
    NoSeat(u32),
}

#[async_trait]
pub trait Logins: Send + Sync + 'static {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Adds a key and retires the other live keys of its algorithm.
    async fn add_signing_key(&self, key: &StoredSigningKey, actor: &Actor) -> StoreResult<()>;
    async fn delete_signing_keys_retired_before(&self, cutoff: Timestamp) -> StoreResult<()>;

    async fn organization_by_domain(&self, domain: &str) -> StoreResult<Option<Organization>>;
    /// An application and its client-secret hash (empty for public clients).
    async fn application_by_client_id(&self, client_id: &str) -> StoreResult<Option<(Application, String)>>;

    /// Finds or (with JIT provisioning) creates the user an IdP profile belongs to in
    /// the connection's organization, and refreshes their profile from it.
    async fn provision_user(&self, connection: &Connection, profile: &IdpProfile, login_at: Timestamp) -> StoreResult<Provisioned>;

    /// Replaces the user's group memberships with those group sync resolves from the
    /// IdP's groups (given the organization's groups as they are inside the
    /// transaction), creating the groups it asks for, keeping the raw IdP groups on the
    /// user, and recording what changed.
    async fn sync_groups(&self, user_id: &str, idp_groups: &[IdpGroup], resolve: ResolveGroups<'_>, actor: &Actor)
        -> StoreResult<UserView>;

    /// Queues a re-sync of the users of `connection_id`, or of every connection of the
    /// organization with group sync on; a connection with a job already queued is not
    /// queued twice. Returns the jobs queued.
    async fn enqueue_sync_jobs(&self, organization_id: &str, connection_id: Option<&str>, reason: &str) -> StoreResult<Vec<SyncJob>>;
    /// Takes the oldest queued job and marks it running (one taker per job).
    async fn claim_sync_job(&self) -> StoreResult<Option<SyncJob>>;
    async fn update_sync_job(&self, id: &str, status: &str, total: u64, done: u64, error: Option<&str>) -> StoreResult<()>;
    /// Jobs left running by a process that stopped go back to the queue.
    async fn requeue_running_sync_jobs(&self) -> StoreResult<u64>;
    async fn sync_job(&self, id: &str) -> StoreResult<Option<SyncJob>>;
    /// Newest first.
    async fn list_sync_jobs(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<SyncJob>>;
    async fn connection_user_count(&self, connection_id: &str) -> StoreResult<u64>;
    /// A page of the users last signed in through a connection, in id order.
    async fn connection_users(&self, connection_id: &str, after: &str, limit: u32) -> StoreResult<Vec<UserView>>;

    async fn session(&self, id_hash: &str) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;

    /// Stores a grant; for a sign-in that just completed at the IdP, also (in the same
    /// round trip) its new session and the mark that its login state is used — a
    /// state already used is a `Conflict` on `state_hash` and stores nothing.
    async fn create_grant(&self, grant: &Grant, sign_in: Option<SignIn<'_>>) -> StoreResult<()>;
    /// Exchanges a code for the access token `token_hash`, in one atomic step.
    async fn redeem_grant(&self, code_hash: &str, token_hash: &str, token_expires_at: Timestamp, now: Timestamp)
        -> StoreResult<Redemption>;
    async fn issued_token(&self, token_hash: &str) -> StoreResult<Option<IssuedToken>>;

    /// Deletes expired login states, grants and sessions; returns how many.
    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64>;
}
