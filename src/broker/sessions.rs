//! Ending sessions. Whatever ends one (the user signing out, an admin, the IdP's
//! back-channel logout, a refresh the IdP refuses), its codes and tokens are revoked
//! with it, and the applications that registered a `backchannel_logout_uri` are told
//! (OpenID Connect Back-Channel Logout 1.0).

use std::time::Duration;

use serde_json::json;

use super::Broker;
use crate::core::application::Application;
use crate::core::audit::Actor;
use crate::crypto::random_token;
use crate::oidc::keys::SigningAlg;
use crate::outbound::AppClient;
use crate::store::{EndedSession, Session, SessionFilter, SessionHandle, StoreResult};

const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Lifetime of the logout tokens sent to applications.
const LOGOUT_TOKEN_TTL: Duration = Duration::from_secs(120);
/// Delivery attempts per application, with these pauses between them.
const DELIVERY_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

impl Broker {
    /// The session behind a browser cookie or a token, if it is still live. Using it
    /// counts as activity: its idle end moves to `idle` from now (the absolute end
    /// stays), so a user working in an application through its tokens stays signed in.
    pub(super) async fn use_session(&self, id_hash: &SessionHandle) -> StoreResult<Option<Session>> {
        let t = self.clock.now();
        self.store.touch_session(id_hash, t, t + self.lifetimes.session.idle).await
    }

    /// Ends the sessions `filter` names; see the module doc.
    pub async fn end_sessions(&self, filter: SessionFilter<'_>, reason: &str, actor: &Actor) -> StoreResult<Vec<EndedSession>> {
        let ended = self.store.end_sessions(filter, reason, actor).await?;
        if !ended.is_empty() {
            self.deliveries_wake.notify_one();
        }
        // One announcement for all of them (signing a user out everywhere ends many).
        self.forget_tokens(ended.iter().flat_map(|e| e.revoked_token_hashes.iter().cloned()).collect()).await;
        for e in &ended {
            tracing::info!(session_id = %e.session.id, user_id = %e.session.user_id, reason, "session ended");
            self.send_backchannel_logouts(e).await;
        }
        Ok(ended)
    }

    /// The applications that held codes or tokens under an ended session (those
    /// that cannot be read are logged and left out: telling them is `purpose`).
    async fn applications_of(&self, ended: &EndedSession, purpose: &str) -> Vec<Application> {
        let mut apps = vec![];
        for app_id in &ended.application_ids {
            match self.store.get_application(app_id).await {
                Ok(Some(app)) => apps.push(app),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, application_id = %app_id, purpose, "skipped: the application could not be read"),
            }
        }
        apps
    }

    /// The pages the browser is to load in frames as it signs out of the ended
    /// sessions (OIDC Front-Channel Logout 1.0 §2–3): each application that held
    /// tokens under one and registered a `frontchannel_logout_uri`, with `iss` and
    /// `sid` for those that asked for them.
    pub(super) async fn frontchannel_logout_frames(&self, ended: &[EndedSession]) -> Vec<String> {
        let mut frames = vec![];
        for e in ended {
            for app in self.applications_of(e, "front-channel logout").await {
                let Some(mut url) = app.frontchannel_logout_uri.as_deref().and_then(|u| url::Url::parse(u).ok()) else { continue };
                if app.frontchannel_logout_session_required {
                    url.query_pairs_mut().append_pair("iss", &self.issuer).append_pair("sid", &e.session.id);
                }
                frames.push(url.into());
            }
        }
        frames.sort();
        frames.dedup();
        frames
    }

    /// Signs a logout token for each application of the session that asked for one
    /// and delivers them in the background (a slow application must not hold up the
    /// sign-out).
    async fn send_backchannel_logouts(&self, ended: &EndedSession) {
        for app in self.applications_of(ended, "back-channel logout").await {
            let Some(uri) = app.backchannel_logout_uri.clone() else { continue };
            let t = self.clock.now();
            let claims = json!({
                "iss": self.issuer,
                "aud": app.client_id,
                "iat": t.unix_timestamp(),
                "exp": (t + LOGOUT_TOKEN_TTL).unix_timestamp(),
                "jti": random_token(""),
                "sub": ended.session.user_id,
                "sid": ended.session.id,
                "events": { LOGOUT_EVENT: {} },
            });
            let alg = SigningAlg::parse(&app.id_token_signed_response_alg).unwrap_or(SigningAlg::RS256);
            let Some(token) = self.keys.signer(alg).and_then(|k| k.sign_jwt_typed(&claims, "logout+jwt").ok()) else {
                tracing::error!(application_id = %app.id, "back-channel logout skipped: no signing key");
                continue;
            };
            let client = self.app_client.clone();
            let client_id = app.client_id.clone();
            tokio::spawn(async move { deliver_logout_token(client, uri, client_id, token).await });
        }
    }
}

/// POSTs the logout token (§2.5), retrying a few times if the application is down.
async fn deliver_logout_token(client: AppClient, uri: String, client_id: String, token: String) {
    if let Some(why) = client.refusal(&uri) {
        tracing::error!(client_id = %client_id, why, "back-channel logout not sent: the application's URI is outside the network policy");
        return;
    }
    let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &token).finish();
    for pause in DELIVERY_RETRIES.iter().map(Some).chain([None]) {
        let request = client.http.post(&uri).header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body.clone());
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client_id = %client_id, "back-channel logout delivered");
                return;
            }
            // The application understood and refused: retrying will not help.
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(client_id = %client_id, status = r.status().as_u16(), "the application refused the back-channel logout");
                return;
            }
            Ok(r) => tracing::warn!(client_id = %client_id, status = r.status().as_u16(), "back-channel logout failed"),
            Err(e) => tracing::warn!(client_id = %client_id, error = %e, "back-channel logout failed"),
        }
        match pause {
            Some(p) => tokio::time::sleep(*p).await,
            None => tracing::error!(client_id = %client_id, "back-channel logout abandoned after retries"),
        }
    }
}
