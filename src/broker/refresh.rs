//! Background refresh of the identity providers' tokens. Each session with a
//! refresh token is refreshed a margin before its access token expires, whether or
//! not a request arrives; the fresh userinfo and groups then flow into the user's
//! profile, group memberships and the claims applications see. A refusal ends the
//! session; an IdP that stays down past the grace period does too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Broker, SetupFailure};
use crate::core::audit::Actor;
use crate::core::claims::{self, Claims};
use crate::core::group_sync;
use crate::core::session::{refusal_is_final, AfterFailure, UpstreamTokens};
use crate::core::Timestamp;
use crate::store::{Session, SessionFilter, StoreError};
use crate::telemetry;
use crate::upstream::rp::{LoginError, Previous};

/// Sessions refreshed at once; a claim takes no more than the free slots, so every
/// claimed session starts at once and its whole lease is its own.
const CONCURRENCY: usize = 64;
/// How many IdP requests' worth of time a claim keeps other replicas off a session:
/// the longest refresh makes eight (metadata, token, keys and userinfo, each maybe
/// followed to a moved endpoint), and the rest is headroom.
const LEASE_IN_IDP_REQUESTS: u32 = 12;
/// The shortest lease, for short IdP timeouts.
const MIN_LEASE: Duration = Duration::from_secs(120);
/// The pause when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Why a refresh did not happen.
#[derive(Debug, thiserror::Error)]
enum RefreshFailure {
    /// The grant is gone (refused, revoked, connection or user removed): end the session.
    #[error("{0}")]
    Final(String),
    /// Worth retrying (IdP down or slow, database hiccup).
    #[error("{0}")]
    Transient(String),
    /// The session ended meanwhile, or its lease ran out and another replica may
    /// hold it: nothing more is written.
    #[error("the session ended or its refresh lease was lost")]
    LeaseLost,
}

impl From<StoreError> for RefreshFailure {
    fn from(e: StoreError) -> Self {
        RefreshFailure::Transient(format!("store: {e}"))
    }
}

impl From<SetupFailure> for RefreshFailure {
    fn from(e: SetupFailure) -> Self {
        match e {
            SetupFailure::Store(e) => e.into(),
            SetupFailure::Upstream(e) => RefreshFailure::Transient(e.to_string()),
        }
    }
}

impl From<LoginError> for RefreshFailure {
    fn from(e: LoginError) -> Self {
        match &e {
            LoginError::TokenRejected { error, .. } if refusal_is_final(error) => RefreshFailure::Final(e.to_string()),
            LoginError::Upstream(_) | LoginError::TokenRejected { .. } | LoginError::NoAccessToken => {
                RefreshFailure::Transient(e.to_string())
            }
            // A token that fails validation or names another subject is not to be trusted.
            _ => RefreshFailure::Final(e.to_string()),
        }
    }
}

impl Broker {
    /// Runs for the life of the process: claims due sessions as refresh slots free
    /// up, so a slow IdP holds only the slots of its own sessions (and no more than
    /// its in-flight cap lets through), never a whole round of everyone's.
    pub async fn run_refresher(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        loop {
            let Ok(first) = slots.clone().acquire_owned().await else { return };
            let free = 1 + slots.available_permits();
            let t = self.clock.now();
            let lease = self.refresh_lease();
            let lease_until = t + lease;
            let due = match self.store.claim_due_refreshes(t, lease_until, free as u32).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming sessions to refresh failed");
                    Vec::new()
                }
            };
            if due.is_empty() {
                drop(first);
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            // Past this, the lease may be taken by another replica; the store refuses
            // every write of a lease that was lost, so a late refresh changes nothing.
            let deadline = tokio::time::Instant::now() + lease - lease / 4;
            // Only this loop takes slots, so the `free` ones are there to take.
            let permits = std::iter::once(Some(first)).chain(std::iter::repeat_with(|| slots.clone().try_acquire_owned().ok()));
            for (session, permit) in due.into_iter().zip(permits) {
                let this = self.clone();
                tokio::spawn(async move {
                    this.refresh_session(session, lease_until, deadline).await;
                    drop(permit);
                });
            }
        }
    }

    fn refresh_lease(&self) -> Duration {
        (self.providers.client().request_timeout() * LEASE_IN_IDP_REQUESTS).max(MIN_LEASE)
    }

    async fn refresh_session(&self, session: Session, lease: Timestamp, deadline: tokio::time::Instant) {
        // Every IdP request is bounded by the IdP timeout, so the token request (the
        // step whose answer must not be lost) ends long before the deadline; what
        // the deadline cuts is a later step, after the new tokens were stored.
        let attempt = tokio::time::timeout_at(deadline, self.try_refresh(&session, lease));
        let failure = match attempt.await {
            Ok(Ok(())) => return telemetry::refresh("refreshed"),
            Ok(Err(f)) => f,
            Err(_) => RefreshFailure::Transient("the refresh took longer than its lease allows".into()),
        };
        let t = self.clock.now();
        let end = match &failure {
            RefreshFailure::LeaseLost => {
                tracing::info!(session_id = %session.id, "the session ended, or its refresh outlived its lease, while it was refreshed");
                return telemetry::refresh("lease_lost");
            }
            RefreshFailure::Final(_) => true,
            RefreshFailure::Transient(why) => {
                let since = session.refresh.failing_since.unwrap_or(t);
                match self.refresh.after_transient_failure(since, t) {
                    AfterFailure::RetryAt(at) => {
                        tracing::warn!(session_id = %session.id, error = %why, retry_at = %at, "refreshing upstream tokens failed; will retry");
                        telemetry::refresh("retrying");
                        if let Err(e) = self.store.save_refresh_failure(&session.id_hash, lease, since, at, why).await {
                            tracing::warn!(session_id = %session.id, error = %e, "recording a failed refresh failed");
                        }
                        false
                    }
                    AfterFailure::EndSession => true,
                }
            }
        };
        if end {
            // A refusal after the lease was lost may be of a token another replica
            // already replaced: only the lease holder ends the session.
            match self.store.holds_refresh_lease(&session.id_hash, lease).await {
                Ok(true) => {}
                Ok(false) => return telemetry::refresh("lease_lost"),
                Err(e) => return tracing::warn!(session_id = %session.id, error = %e, "checking a refresh lease failed"),
            }
            tracing::warn!(session_id = %session.id, error = %failure, "upstream refresh failed for good; ending the session");
            telemetry::refresh("session_ended");
            let actor = Actor(format!("refresh:{}", session.connection_id.as_deref().unwrap_or("-")));
            if let Err(e) = self.end_sessions(SessionFilter::Handle(&session.id_hash), "refresh_failed", &actor).await {
                tracing::error!(session_id = %session.id, error = %e, "ending a session whose refresh failed did not work; it stays claimed until the lease ends");
            }
        }
    }

    async fn try_refresh(&self, s: &Session, lease: Timestamp) -> Result<(), RefreshFailure> {
        use RefreshFailure::{Final, LeaseLost, Transient};
        let previous = s.upstream.as_ref().ok_or_else(|| Final("the session holds no upstream tokens".into()))?;
        let refresh_token = previous.refresh_token.as_deref().ok_or_else(|| Final("no refresh token".into()))?;
        let connection_id = s.connection_id.as_deref().ok_or_else(|| Final("the session has no connection".into()))?;
        let store = self.store.as_ref();
        let connection = self.config.connection(store, connection_id).await?.ok_or_else(|| Final("the connection was removed".into()))?;
        let mut rp = self.relying_party(&connection, connection.redirect_uri(&self.issuer)).await?;
        let answer = rp.refresh(refresh_token).await?;
        let t = self.clock.now();
        // Stored before anything else can fail: an IdP that rotates refresh tokens
        // refuses the old one, so losing the new one would end the session at the
        // next attempt.
        let arrived = UpstreamTokens {
            access_token: answer.access_token.clone(),
            // The IdP may rotate the refresh token, or keep the old one valid.
            refresh_token: answer.refresh_token.clone().or_else(|| previous.refresh_token.clone()),
            id_token: answer.id_token.clone().or_else(|| previous.id_token.clone()),
            expires_at: answer.expires_in.map(|e| t.unix_timestamp() + e),
            ..previous.clone()
        };
        if !store.save_upstream_tokens(&s.id, &s.id_hash, lease, &arrived).await? {
            return Err(LeaseLost);
        }
        let sub = s.idp_sub.as_deref().ok_or_else(|| Final("the session names no IdP subject".into()))?;
        let before = Previous { sub, nonce: &previous.nonce, id_claims: &previous.id_token_claims };
        let identity = rp.verify_refresh(answer, &before, t.unix_timestamp()).await?;
        let profile = identity.profile();
        self.check_claim_limits(&connection, &identity, &profile).map_err(Final)?;
        let user = store
            .refresh_user_profile(&connection, &claims::normalize(&profile), t)
            .await?
            .ok_or_else(|| Final("the user was removed".into()))?;
        let actor = Actor(format!("refresh:{}", connection.id));
        // Groups the IdP carries only in the ID token cannot be read again without a
        // new one: then userinfo's groups count, if it has them, and otherwise the
        // refresh has nothing new to say about groups (the old ID token's are stale).
        let no_id_token = Claims::new();
        let said_now = if identity.fresh_id_token { &identity.id_claims } else { &no_id_token };
        let userinfo = identity.userinfo.as_ref();
        let groups_in_userinfo = userinfo.is_some_and(|u| group_sync::idp_groups(u, &connection.group_sync.claim).is_some());
        // verify_refresh refused an answer without one.
        let access_token = identity.tokens.access_token.as_deref().unwrap_or_default();
        let user = if identity.fresh_id_token || groups_in_userinfo {
            self.sync_groups(&connection, user, (said_now, userinfo), access_token, &actor)
                .await
                .map_err(|e| Transient(format!("group sync: {}", e.description)))?
        } else {
            user
        };
        let org = self
            .config
            .organization(store, &user.user.organization_id)
            .await?
            .ok_or_else(|| Final("the organization was removed".into()))?;
        let claims_for_scope = |scope: &str| {
            let scopes: Vec<String> = scope.split(' ').map(str::to_owned).collect();
            Value::Object(claims::user_claims(&user, &org, &scopes))
        };
        let affected = store.reissue_grant_claims(&s.id_hash, &claims_for_scope).await?;
        self.forget_tokens(affected).await;

        let tokens = UpstreamTokens { id_token_claims: identity.id_claims, profile, ..arrived };
        if !store.save_refreshed(&s.id_hash, lease, &tokens, self.refresh.due_at(&tokens, t), t).await? {
            return Err(LeaseLost);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::super::testkit::fake_op::Fault;
    use super::super::testkit::Scene;
    use crate::core::clock::Clock;
    use crate::core::Timestamp;
    use crate::store::Session;

    const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

    /// A signed-in user with a refresh token that rotates, and their session.
    async fn signed_in() -> (Scene, String, Session) {
        let scene = Scene::new().await;
        scene.op.rotate_refresh_tokens(TOKEN_LIFETIME);
        let signed_in = scene.sign_in("alice", HashMap::new()).await;
        let user = scene.userinfo(&signed_in.tokens.access_token).await.unwrap()["sub"].as_str().unwrap().to_owned();
        let session = scene.broker.store.user_sessions(&user).await.unwrap().remove(0);
        (scene, signed_in.tokens.access_token, session)
    }

    /// Claims the sessions due now, as the refresher would, and refreshes them.
    async fn refresh_due(scene: &Scene) -> usize {
        let t = scene.clock.now();
        let lease: Timestamp = t + scene.broker.refresh_lease();
        let due = scene.broker.store.claim_due_refreshes(t, lease, 10).await.unwrap();
        for session in &due {
            scene.broker.refresh_session(session.clone(), lease, tokio::time::Instant::now() + Duration::from_secs(30)).await;
        }
        due.len()
    }

    /// A refresh falls due a margin before the IdP's access token expires, by the
    /// clock, not before; its rotated refresh token is kept and the next one is due
    /// a token lifetime later.
    #[tokio::test]
    async fn sessions_refresh_when_their_tokens_fall_due() {
        let (scene, _, session) = signed_in().await;
        let margin = scene.broker.refresh.margin;
        scene.clock.advance(TOKEN_LIFETIME - margin - Duration::from_secs(1));
        assert_eq!(refresh_due(&scene).await, 0, "not due yet");
        scene.clock.advance(Duration::from_secs(2));
        assert_eq!(refresh_due(&scene).await, 1);
        assert_eq!(scene.op.refreshes(), ["rt.alice.0"]);
        let after = scene.broker.store.session(&session.id_hash).await.unwrap().unwrap();
        assert_eq!(after.upstream.as_ref().and_then(|u| u.refresh_token.as_deref()), Some("rt.alice.1"));
        let next_due = after.refresh.due_at.unwrap() - scene.clock.now();
        // Whole seconds: the IdP's `expires_in` counts from the second it answered in.
        let expected = (TOKEN_LIFETIME - margin).as_secs() as i64;
        assert!((expected - 1..=expected).contains(&next_due.whole_seconds()), "{next_due}");
        assert!(after.refresh.failing_since.is_none() && after.refresh.last_refreshed_at == Some(scene.clock.now()));
    }

    /// An IdP that stays down: each failure is retried, and once it has failed for
    /// longer than the grace period, the session ends and its tokens stop.
    #[tokio::test]
    async fn an_idp_down_past_the_grace_period_ends_the_session() {
        let (scene, access_token, session) = signed_in().await;
        scene.op.set_fault(Fault::TokenEndpointFails);
        scene.clock.advance(TOKEN_LIFETIME);
        assert_eq!(refresh_due(&scene).await, 1);
        let failing = scene.broker.store.session(&session.id_hash).await.unwrap().expect("kept while within the grace");
        assert_eq!(failing.refresh.failing_since, Some(scene.clock.now()), "{:?}", failing.refresh);
        assert!(scene.userinfo(&access_token).await.is_some());
        let grace = scene.broker.refresh.grace;
        let mut attempts = 1;
        while scene.broker.store.session(&session.id_hash).await.unwrap().is_some() {
            assert!(attempts < 20, "the session outlived the grace period");
            scene.clock.advance(grace / 4);
            attempts += refresh_due(&scene).await;
        }
        assert!(attempts > 2, "retried before giving up: {attempts}");
        assert!(scene.userinfo(&access_token).await.is_none(), "its tokens stopped");
    }
}
