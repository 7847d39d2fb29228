//! The state of logins: signing keys, used login states, browser sessions,
//! authorization codes and access tokens. Every credential is looked up by its
//! SHA-256 hash, so a database leak does not hand out live sessions or tokens.

use async_trait::async_trait;
use serde_json::Value;

use super::{Page, StoreResult};
use crate::core::application::Application;
use crate::core::audit::Actor;
use crate::core::claims::{Claims, IdpProfile};
use crate::core::connection::Connection;
use crate::core::group_sync::SyncJob;
use crate::core::organization::Organization;
use crate::core::session::UpstreamTokens;
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

/// How the store finds a session: the hash of its cookie's secret. A type of its own,
/// so that neither the secret itself nor the session's public id (`ses_…`, which
/// travels beside it) can be passed where it is meant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// The handle of the session whose cookie holds `secret`.
    pub fn of_secret(secret: &str) -> Self {
        SessionHandle(crate::crypto::hash_secret(secret))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A browser's signed-in session at ssogate.
#[derive(Clone, Debug)]
pub struct Session {
    /// Public id (`ses_…`): the `sid` applications see, and what admins revoke by.
    pub id: String,
    /// Hash of the cookie's secret, which is what looks the session up.
    pub id_hash: SessionHandle,
    pub user_id: String,
    pub organization_id: String,
    pub connection_id: Option<String>,
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    /// The absolute end.
    pub expires_at: Timestamp,
    /// The end if nothing happens meanwhile.
    pub idle_expires_at: Timestamp,
    pub last_active_at: Timestamp,
    /// The IdP's subject and session id, which its back-channel logout tokens name.
    pub idp_sub: Option<String>,
    pub idp_sid: Option<String>,
    /// The IdP's tokens (sealed at rest).
    pub upstream: Option<UpstreamTokens>,
    pub refresh: RefreshState,
}

impl Session {
    pub fn is_live(&self, at: Timestamp) -> bool {
        self.expires_at > at && self.idle_expires_at > at
    }
}

/// Where the background refresh of a session's upstream tokens stands.
#[derive(Clone, Debug, Default)]
pub struct RefreshState {
    /// When it is next due; `None`: never (no refresh token).
    pub due_at: Option<Timestamp>,
    pub last_refreshed_at: Option<Timestamp>,
    /// Set while refreshes keep failing.
    pub failing_since: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Which sessions to end.
#[derive(Clone, Copy, Debug)]
pub enum SessionFilter<'a> {
    /// The session of a browser's cookie, by its hash.
    Handle(&'a SessionHandle),
    /// One session of a user, by public id.
    Id { user_id: &'a str, id: &'a str },
    /// Every session of a user.
    User(&'a str),
    /// The sessions an IdP's back-channel logout names: its subject, its session id, or both.
    Idp { connection_id: &'a str, sub: Option<&'a str>, sid: Option<&'a str> },
    /// A user's sessions through a connection whose IdP named no session of its own:
    /// what a front-channel logout naming the user by subject ends.
    IdpSubjectWithoutSid { connection_id: &'a str, sub: &'a str },
    /// Every session signed in through a connection.
    Connection(&'a str),
    /// Every session of an organization's users.
    Organization(&'a str),
    /// Every session of a deactivated user (a sign-in that raced their deactivation).
    InactiveUsers,
}

/// A session that was ended, and what ending it revoked.
#[derive(Clone, Debug)]
pub struct EndedSession {
    pub session: Session,
    /// Hashes of the access tokens revoked with it.
    pub revoked_token_hashes: Vec<String>,
    /// The applications that held codes or tokens under it.
    pub application_ids: Vec<String>,
}

/// Whose memberships a group sync replaces, by which connection's rules: two ids
/// of the same type, named so that they cannot be passed the wrong way round.
#[derive(Clone, Copy, Debug)]
pub struct GroupSyncOf<'a> {
    pub user_id: &'a str,
    pub connection_id: &'a str,
}

/// The IdP groups a group sync applies.
#[derive(Clone, Copy, Debug)]
pub enum IdpGroupsSource<'a> {
    /// What the IdP just said (a sign-in or a refresh): its groups claim is read at
    /// the path the connection names when the sync commits, applied, and kept on the
    /// user. Without the claim, memberships stay as they are (and the audit log says
    /// why): an IdP that leaves it out has not said "no groups".
    Reported { id_token: &'a Claims, userinfo: Option<&'a Claims> },
    /// The ones kept on the user (a re-sync after an admin change): read inside the
    /// transaction, under the row lock, and never written back, so a sign-in that
    /// landed meanwhile is not undone. A user whose groups the IdP never reported
    /// is left as they are.
    Stored,
}

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
    pub session_hash: SessionHandle,
    /// The session's public id, the ID token's `sid`.
    pub session_id: String,
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

/// An access token as userinfo, introspection and revocation need it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The userinfo answer (the profile as of the latest sign-in or refresh).
    pub claims: Value,
    pub application_id: String,
    /// Its grant (the token family).
    pub code_hash: String,
    /// The client it was issued to, and the `aud` its tokens are for.
    pub client_id: String,
    pub audience: String,
    pub session_hash: SessionHandle,
    pub session_id: String,
    /// Its own scope (a refresh may have narrowed it from the grant's).
    pub scope: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

/// The tokens a code exchange issues: the access token and, for a grant whose scope
/// asked for `offline_access`, the first refresh token of its family.
#[derive(Clone, Copy, Debug)]
pub struct FirstTokens<'a> {
    pub access_hash: &'a str,
    pub access_expires_at: Timestamp,
    pub refresh_hash: &'a str,
}

/// A refresh token, found by its hash.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub grant: Grant,
    /// Exchanged already for the next one: presenting it again is reuse.
    pub spent: bool,
    /// The family was revoked (its session ended, or it was revoked or reused).
    pub revoked: bool,
}

/// What a refresh replaces the family's tokens with.
#[derive(Clone, Copy, Debug)]
pub struct NextTokens<'a> {
    pub access_hash: &'a str,
    pub access_expires_at: Timestamp,
    pub refresh_hash: &'a str,
    /// The userinfo answer from now on (the user as they are now), and the access
    /// token's scope (the family keeps the grant's).
    pub claims: &'a Value,
    pub scope: &'a str,
    pub at: Timestamp,
}

/// What a revocation ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokedTokens {
    /// This access token (by hash) alone: its family's refresh token still works.
    AccessToken(String),
    /// The grant (by code hash): its access token and every refresh token.
    Family(String),
}

/// What exchanging a refresh token found.
#[derive(Debug)]
pub enum Rotation {
    /// The new tokens are the family's; the access token they replace (now
    /// unknown) is returned so caches can drop it.
    Rotated { replaced_token_hash: Option<String> },
    /// It had been exchanged before (by someone else meanwhile, or long ago): the
    /// family is revoked now (RFC 9700 §4.14.2).
    Reused { revoked_token_hashes: Vec<String> },
    /// The family was revoked already.
    Revoked,
}

/// The outcome of matching an IdP profile to the organization's users.
#[derive(Debug)]
pub enum Provisioned {
    User(Box<UserView>),
    /// Provisioning `existing_users` found nobody to match.
    NotAllowed,
    /// A new user would exceed the organization's seats (`max_users`).
    NoSeat(u32),
    /// The user's directory deactivated them: whatever their IdP says, they stay out.
    Deactivated,
}

#[async_trait]
pub trait Logins: Send + Sync + 'static {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Adds a key. `replace` (a rotation) retires the live keys of its algorithm;
    /// otherwise the key is added only if its algorithm has no live key, so that
    /// replicas starting together create one key, not one each. Returns whether it
    /// was added.
    async fn add_signing_key(&self, key: &StoredSigningKey, replace: bool, actor: &Actor) -> StoreResult<bool>;
    async fn delete_signing_keys_retired_before(&self, cutoff: Timestamp) -> StoreResult<()>;

    async fn organization_by_domain(&self, domain: &str) -> StoreResult<Option<Organization>>;
    /// An application and its client-secret hash (empty for public clients).
    async fn application_by_client_id(&self, client_id: &str) -> StoreResult<Option<(Application, String)>>;

    /// Finds or (with JIT provisioning) creates the user an IdP profile belongs to in
    /// the connection's organization, and refreshes their profile from it.
    async fn provision_user(&self, connection: &Connection, profile: &IdpProfile, login_at: Timestamp) -> StoreResult<Provisioned>;

    /// Replaces the user's group memberships with those the connection's group sync
    /// resolves from the IdP's groups, creating the groups it asks for and recording
    /// what changed. The user's row is held for the whole transaction, and the rules
    /// and the organization's groups are read inside it: a mapping changed while a
    /// sign-in was at the IdP applies to that sign-in too, and two syncs of one user
    /// take turns. With group sync off on the connection by then, nothing changes.
    async fn sync_groups(&self, of: GroupSyncOf<'_>, groups: IdpGroupsSource<'_>, actor: &Actor) -> StoreResult<UserView>;

    /// Takes the oldest queued job and marks it running (one taker per job).
    async fn claim_sync_job(&self) -> StoreResult<Option<SyncJob>>;
    async fn update_sync_job(&self, id: &str, status: &str, total: u64, done: u64, error: Option<&str>) -> StoreResult<()>;
    /// Jobs whose progress has not moved since `stalled_before` (left running by a
    /// process that stopped) go back to the queue. A running job records progress
    /// at least every page of users, so a live replica's job is never taken from it.
    async fn requeue_stalled_sync_jobs(&self, stalled_before: Timestamp) -> StoreResult<u64>;
    async fn sync_job(&self, id: &str) -> StoreResult<Option<SyncJob>>;
    /// Newest first.
    async fn list_sync_jobs(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<SyncJob>>;
    async fn connection_user_count(&self, connection_id: &str) -> StoreResult<u64>;
    /// Re-syncs the groups of the connection's next users after `after` (in id
    /// order, at most `limit`) from their stored IdP groups, in one transaction;
    /// returns the last one's id and how many, or `None` when none is left.
    async fn resync_connection_users(
        &self,
        connection_id: &str,
        after: &str,
        limit: u32,
        actor: &Actor,
    ) -> StoreResult<Option<(String, u64)>>;

    async fn session(&self, id_hash: &SessionHandle) -> StoreResult<Option<Session>>;
    /// Marks the session active at `at` (pushing its idle end to `idle_until`) and
    /// returns it, if it is still live.
    async fn touch_session(&self, id_hash: &SessionHandle, at: Timestamp, idle_until: Timestamp) -> StoreResult<Option<Session>>;
    /// A user's sessions, newest first.
    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<Session>>;
    /// Ends the sessions the filter names and revokes every code and token issued
    /// under them, in one transaction, recording why in the audit log.
    async fn end_sessions(&self, filter: SessionFilter<'_>, reason: &str, actor: &Actor) -> StoreResult<Vec<EndedSession>>;
    /// Moves a user's grants from their previous session to the one that replaced it
    /// at a new sign-in, so their applications stay signed in.
    async fn adopt_grants(&self, old_hash: &SessionHandle, new: &Session) -> StoreResult<()>;
    /// Whether the application was given a code under the session before.
    async fn session_has_signed_in(&self, session_hash: &SessionHandle, application_id: &str) -> StoreResult<bool>;

    /// Claims up to `limit` sessions whose upstream refresh is due, each for one
    /// taker until `lease_until` (so a refresh runs once across replicas). The
    /// writes below take that `lease` back and do nothing once it is no longer the
    /// session's: a refresh that outlived its lease cannot undo the next one's work.
    async fn claim_due_refreshes(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Session>>;
    /// Stores what the IdP just handed over (a rotated refresh token is usable once),
    /// before anything else of the refresh can fail; false if the session is gone or
    /// the lease lost.
    async fn save_upstream_tokens(
        &self,
        session_id: &str,
        id_hash: &SessionHandle,
        lease: Timestamp,
        tokens: &UpstreamTokens,
    ) -> StoreResult<bool>;
    /// Stores refreshed upstream tokens and the next due time, ending the lease;
    /// false if the session is gone or the lease lost.
    async fn save_refreshed(
        &self,
        id_hash: &SessionHandle,
        lease: Timestamp,
        tokens: &UpstreamTokens,
        due_at: Option<Timestamp>,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Records a failed refresh and when to retry, ending the lease; false if the
    /// session is gone or the lease lost.
    async fn save_refresh_failure(
        &self,
        id_hash: &SessionHandle,
        lease: Timestamp,
        failing_since: Timestamp,
        retry_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;
    /// Whether the session is still claimed under `lease`.
    async fn holds_refresh_lease(&self, id_hash: &SessionHandle, lease: Timestamp) -> StoreResult<bool>;
    /// Refreshes a signed-in user's profile from the IdP (not a sign-in: the last
    /// login time stays); `None` if the user is gone.
    async fn refresh_user_profile(&self, connection: &Connection, profile: &IdpProfile, at: Timestamp) -> StoreResult<Option<UserView>>;
    /// Re-derives the claims of the session's live grants (given each grant's scope),
    /// so userinfo follows the profile; returns the hashes of the tokens affected.
    async fn reissue_grant_claims(
        &self,
        session_hash: &SessionHandle,
        claims_for_scope: &(dyn for<'s> Fn(&'s str) -> Value + Sync),
    ) -> StoreResult<Vec<String>>;

    /// Records that a one-time value (a logout token's `jti`) was used; false if it
    /// already was.
    async fn use_once(&self, hash: &str, expires_at: Timestamp) -> StoreResult<bool>;

    /// Whether a one-time value was used (a console session signed out).
    async fn is_used(&self, hash: &str) -> StoreResult<bool>;

    /// Stores a grant; for a sign-in that just completed at the IdP, also (in the same
    /// round trip) its new session and the mark that its login state is used — a
    /// state already used is a `Conflict` on `state_hash` and stores nothing.
    async fn create_grant(&self, grant: &Grant, sign_in: Option<SignIn<'_>>) -> StoreResult<()>;
    /// Exchanges a code for its first tokens, in one atomic step (a grant that asked
    /// for `offline_access` keeps `refresh_hash` as its refresh token; any other
    /// ignores it).
    async fn redeem_grant(&self, code_hash: &str, tokens: FirstTokens<'_>, now: Timestamp) -> StoreResult<Redemption>;
    /// A grant by its code, redeemed or not (a read: only an exchange spends it).
    async fn grant(&self, code_hash: &str) -> StoreResult<Option<Grant>>;
    async fn issued_token(&self, token_hash: &str) -> StoreResult<Option<IssuedToken>>;
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// Spends the refresh token `spent_hash` and gives its family the next tokens,
    /// in one transaction: of two exchanges of one token, one rotates and the other
    /// finds it reused.
    async fn rotate_refresh_token(&self, spent_hash: &str, next: NextTokens<'_>) -> StoreResult<Rotation>;
    /// Revokes an access token, or a whole token family; returns the hashes of the
    /// access tokens revoked.
    async fn revoke_tokens(&self, which: RevokedTokens) -> StoreResult<Vec<String>>;

    /// Deletes expired login states, grants and sessions; returns how many.
    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64>;
}
