//! Signing out. RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): end
//! the browser's session and its tokens, sign out at the identity provider too (its
//! `end_session_endpoint`, else the connection's `logout_url`), and return to the
//! application if it asked to and the address is one it registered. And back-channel
//! logout from identity providers: a logout token ends the sessions it names.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{handle, Broker, PageKind, Reply, SetCookie, SESSION_COOKIE};
use crate::core::audit::Actor;
use crate::core::authorize::single_valued;
use crate::crypto::{hash_secret, verify_secret};
use crate::store::{Session, SessionFilter, SessionHandle};
use crate::upstream::id_token::{self, MAX_TOKEN_AGE_SECS};

/// The audience of an ID token hint, read without verifying it: it only chooses
/// whose registered addresses the redirect must match, so forging it gains nothing.
fn hinted_client(id_token_hint: &str) -> Option<String> {
    let payload = id_token_hint.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    match &claims["aud"] {
        Value::String(a) => Some(a.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The `typ` of a JWT's header, read unverified (the signature is checked after).
fn jwt_type(jwt: &str) -> Option<String> {
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next()?).ok()?).ok()?;
    header.get("typ").and_then(Value::as_str).map(str::to_owned)
}

/// The CSRF token of the logout confirmation page: derived from the browser's session
/// secret, so only a page ssogate showed that browser can carry it.
fn confirmation_token(session_secret: &str) -> String {
    hash_secret(&format!("logout_confirmation:{session_secret}"))
}

/// Where to send the browser once the IdP has signed it out, sealed into the
/// `state` of the IdP round trip (so it cannot be altered to an open redirect).
#[derive(Serialize, Deserialize)]
struct LogoutReturn {
    to: Option<String>,
    expires_at: i64,
}

const RETURN_CONTEXT: &str = "logout_return";
/// How long a sign-out may take at the IdP.
const RETURN_TTL_SECS: i64 = 600;

/// A front-channel logout from an IdP, done: who may frame the answer, and the
/// applications' pages it frames in turn.
#[derive(Debug)]
pub struct IdpLogout {
    pub idp_origin: String,
    pub frames: Vec<String>,
}

/// Why a back-channel logout token was refused (OIDC Back-Channel Logout 1.0 §2.8).
#[derive(Debug, thiserror::Error)]
pub enum BackchannelError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("ssogate cannot reach its database")]
    Unavailable,
}

impl Broker {
    pub fn logged_out_url(&self) -> String {
        format!("{}/sso/logged-out", self.issuer)
    }

    pub async fn end_session(&self, pairs: Vec<(String, String)>, cookies: &HashMap<String, String>) -> Reply {
        let params = match single_valued(pairs) {
            Ok(p) => p,
            Err(name) => {
                return Reply::page(
                    PageKind::BadRequest,
                    "Invalid sign-out request",
                    format!("The parameter `{name}` was given more than once."),
                )
            }
        };
        let mut back_to_app = None;
        if let Some(uri) = params.get("post_logout_redirect_uri") {
            let client_id = params.get("client_id").cloned().or_else(|| params.get("id_token_hint").and_then(|h| hinted_client(h)));
            let app = match client_id {
                Some(id) => self.config.application(self.store.as_ref(), &id).await.ok().flatten().map(|(a, _)| a),
                None => None,
            };
            let registered = app.filter(|app| app.post_logout_redirect_uris.iter().any(|u| u == uri));
            match registered.and_then(|_| url::Url::parse(uri).ok()) {
                Some(mut url) => {
                    if let Some(state) = params.get("state") {
                        url.query_pairs_mut().append_pair("state", state);
                    }
                    back_to_app = Some(url.to_string());
                }
                None => {
                    return Reply::page(
                        PageKind::BadRequest,
                        "Invalid sign-out request",
                        "The address to return to after signing out is not registered for this application.",
                    );
                }
            }
        }
        let session = match cookies.get(SESSION_COOKIE) {
            Some(secret) => match self.use_session(&SessionHandle::of_secret(secret)).await {
                Ok(s) => s.map(|s| (s, secret)),
                Err(e) => {
                    tracing::error!(error = %e, "reading a session at logout failed");
                    return Reply::page(
                        PageKind::Unavailable,
                        "Sign-out unavailable",
                        "ssogate cannot reach its database; try again shortly.",
                    );
                }
            },
            None => None,
        };
        let clear = SetCookie { name: SESSION_COOKIE.into(), value: None, path: "/", max_age: std::time::Duration::ZERO };
        let Some((session, secret)) = session else {
            // Nothing to end: no need to ask.
            return match back_to_app {
                Some(location) => Reply::Redirect { location, cookies: vec![clear] },
                None => Reply::SignedOut { cookies: vec![clear] },
            };
        };
        // OIDC RP-Initiated Logout 1.0 §2: without an ID token of this very session
        // as hint, the user is asked, so a cross-site link cannot sign them out.
        let hinted = params.get("id_token_hint").is_some_and(|hint| self.hint_names_session(hint, &session));
        let confirm = confirmation_token(secret);
        let confirmed = params.get("confirm").is_some_and(|c| verify_secret(c, &hash_secret(&confirm)));
        if !(hinted || confirmed) {
            let mut fields = vec![("confirm".to_owned(), confirm)];
            for name in ["client_id", "id_token_hint", "post_logout_redirect_uri", "state"] {
                if let Some(v) = params.get(name) {
                    fields.push((name.to_owned(), v.clone()));
                }
            }
            return Reply::ConfirmLogout { fields };
        }
        let (at_idp, frames) = match self.end_sessions(SessionFilter::Handle(&session.id_hash), "logout", &Actor("user".into())).await {
            Ok(ended) => {
                let at_idp = match ended.first() {
                    Some(e) => self.idp_logout_url(&e.session, back_to_app.as_deref()).await,
                    None => None,
                };
                (at_idp, self.frontchannel_logout_frames(&ended).await)
            }
            Err(e) => {
                tracing::error!(error = %e, "ending a session failed");
                return Reply::page(PageKind::Unavailable, "Sign-out unavailable", "ssogate cannot reach its database; try again shortly.");
            }
        };
        match (at_idp.or(back_to_app), frames.is_empty()) {
            (then, false) => Reply::SignedOutOfApps { frames, then, cookies: vec![clear] },
            (Some(location), true) => Reply::Redirect { location, cookies: vec![clear] },
            (None, true) => Reply::SignedOut { cookies: vec![clear] },
        }
    }

    /// Whether `hint` is an ID token ssogate signed for `session` (expired ones count:
    /// a hint is often old, §2). Its signature is checked against the published keys.
    fn hint_names_session(&self, hint: &str, session: &Session) -> bool {
        // An ID token, not another JWT of ssogate's naming the session: a JWT access
        // token (`at+jwt`, held by every API it is sent to) or a logout token.
        if jwt_type(hint).as_deref() != Some("JWT") {
            return false;
        }
        let Ok(jwks) = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&self.keys.jwks()) else { return false };
        match id_token::verify_signature(hint, &jwks.keys, None) {
            Ok(claims) => {
                claims.get("iss").and_then(Value::as_str) == Some(self.issuer.as_str())
                    && claims.get("sid").and_then(Value::as_str) == Some(session.id.as_str())
            }
            Err(_) => false,
        }
    }

    /// Where the browser signs out of the IdP: its `end_session_endpoint` with the ID
    /// token as hint and a way back here, else the connection's `logout_url`.
    async fn idp_logout_url(&self, session: &Session, back_to_app: Option<&str>) -> Option<String> {
        let connection = self.config.connection(self.store.as_ref(), session.connection_id.as_deref()?).await.ok().flatten()?;
        let endpoint = match self.providers.metadata(&connection.discovery_url).await {
            Ok(m) => m.end_session_endpoint.clone(),
            Err(e) => {
                tracing::warn!(connection_id = %connection.id, error = %e, "the IdP's metadata is unavailable; skipping its sign-out");
                None
            }
        };
        let Some(endpoint) = endpoint else { return connection.logout_url };
        let back = LogoutReturn { to: back_to_app.map(str::to_owned), expires_at: self.clock.now().unix_timestamp() + RETURN_TTL_SECS };
        let state = self.sealer.encrypt_str(RETURN_CONTEXT, &serde_json::to_string(&back).ok()?).ok()?;
        let mut url = url::Url::parse(&endpoint).ok()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = session.upstream.as_ref().and_then(|u| u.id_token.as_deref()) {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &connection.client_id)
                .append_pair("post_logout_redirect_uri", &self.logged_out_url())
                .append_pair("state", &state);
        }
        Some(url.into())
    }

    /// The IdP's sign-out is done: back to the application, or a signed-out page.
    pub fn logged_out(&self, pairs: Vec<(String, String)>) -> Reply {
        let params: HashMap<String, String> = pairs.into_iter().collect();
        let back = params
            .get("state")
            .and_then(|s| self.sealer.decrypt_str(RETURN_CONTEXT, s).ok())
            .and_then(|json| serde_json::from_str::<LogoutReturn>(&json).ok())
            .filter(|r| r.expires_at > self.clock.now().unix_timestamp());
        match back.and_then(|r| r.to) {
            Some(location) => Reply::Redirect { location, cookies: vec![] },
            None => Reply::SignedOut { cookies: vec![] },
        }
    }

    /// A back-channel logout token from the IdP of `connection_id`: validated like an
    /// ID token, used once, then the sessions it names end (and the applications
    /// holding their tokens are told in turn). Returns how many sessions ended.
    pub async fn backchannel_logout(&self, connection_id: &str, form: &HashMap<String, String>) -> Result<usize, BackchannelError> {
        let invalid = |m: &str| BackchannelError::InvalidRequest(m.to_owned());
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "back-channel logout failed");
            BackchannelError::Unavailable
        };
        let token = form.get("logout_token").ok_or_else(|| invalid("logout_token is missing"))?;
        let store = self.store.as_ref();
        let connection = self.config.connection(store, connection_id).await.map_err(|e| unavailable(&e))?;
        let connection = connection.ok_or_else(|| invalid("there is no such connection"))?;
        let mut rp = self.relying_party(&connection, connection.redirect_uri(&self.issuer)).await.map_err(|e| unavailable(&e))?;
        let claims = rp.verify_logout_token(token, self.clock.now().unix_timestamp()).await.map_err(|e| {
            tracing::warn!(connection_id, error = %e, "refused a back-channel logout token");
            BackchannelError::InvalidRequest(e.to_string())
        })?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        // A replayed token must not end sessions signed in since.
        let jti = format!("logout:{}:{}", rp.metadata().issuer, text("jti").unwrap_or_default());
        let expires = self.clock.now() + std::time::Duration::from_secs((MAX_TOKEN_AGE_SECS * 2) as u64);
        if !store.use_once(&handle(&jti), expires).await.map_err(|e| unavailable(&e))? {
            return Err(invalid("this logout token was already used"));
        }
        let filter = SessionFilter::Idp { connection_id: &connection.id, sub: text("sub"), sid: text("sid") };
        let actor = Actor(format!("idp:{}", connection.id));
        let ended = self.end_sessions(filter, "idp_logout", &actor).await.map_err(|e| unavailable(&e))?;
        tracing::info!(connection_id, sessions = ended.len(), "back-channel logout from the IdP");
        Ok(ended.len())
    }

    /// A front-channel logout from the IdP of `connection_id` (OIDC Front-Channel
    /// Logout 1.0 §2–3): the IdP loads this URI in an iframe, with its `iss` and the
    /// IdP session's `sid`. A cross-site iframe carries no ssogate cookie (SameSite),
    /// so the pair names the session: `iss` must be the connection's issuer and `sid`
    /// is required (a guess ends nothing). With `frontchannel_logout_by_subject`, a
    /// `sid` that is the user's subject also ends that user's sessions that carry no
    /// IdP session id. Returns how many sessions ended and the
    /// IdP's origin, the one page that may frame the answer.
    pub async fn frontchannel_logout(&self, connection_id: &str, params: &HashMap<String, String>) -> Result<IdpLogout, BackchannelError> {
        let invalid = |m: &str| BackchannelError::InvalidRequest(m.to_owned());
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "front-channel logout failed");
            BackchannelError::Unavailable
        };
        let store = self.store.as_ref();
        let connection = self.config.connection(store, connection_id).await.map_err(|e| unavailable(&e))?;
        let connection = connection.ok_or_else(|| invalid("there is no such connection"))?;
        let metadata = self.providers.metadata(&connection.discovery_url).await.map_err(|e| unavailable(&e))?;
        if params.get("iss") != Some(&metadata.issuer) {
            return Err(invalid("iss is missing or is not this connection's issuer"));
        }
        let sid = params.get("sid").ok_or_else(|| invalid("sid is missing: register the URI with frontchannel_logout_session_required"))?;
        let origin = url::Url::parse(&metadata.issuer).map_err(|_| invalid("the issuer is not a URL"))?.origin().ascii_serialization();
        let actor = Actor(format!("idp:{}", connection.id));
        let by_sid = SessionFilter::Idp { connection_id: &connection.id, sub: None, sid: Some(sid) };
        let ended = self.end_sessions(by_sid, "idp_logout", &actor).await.map_err(|e| unavailable(&e))?;
        let mut count = ended.len();
        if connection.frontchannel_logout_by_subject {
            let by_subject = SessionFilter::IdpSubjectWithoutSid { connection_id: &connection.id, sub: sid };
            // Audited apart: anyone who knows the subject can ask for this one, so
            // its answer names none of the user's sessions or applications.
            count += self.end_sessions(by_subject, "idp_logout_by_subject", &actor).await.map_err(|e| unavailable(&e))?.len();
        }
        tracing::info!(connection_id, sessions = count, "front-channel logout from the IdP");
        // The browser is here: the applications are told through it too (§3).
        Ok(IdpLogout { idp_origin: origin, frames: self.frontchannel_logout_frames(&ended).await })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::testkit::Scene;
    use super::super::{Reply, SESSION_COOKIE};

    /// RP-initiated logout with the application's ID token as hint ends the browser's
    /// session at once: its tokens stop, and the next sign-in goes to the IdP.
    #[tokio::test]
    async fn a_logout_with_the_id_token_as_hint_ends_the_session() {
        let scene = Scene::new().await;
        let signed_in = scene.sign_in("alice", HashMap::new()).await;
        assert!(signed_in.cookies.contains_key(SESSION_COOKIE));
        let pairs = vec![("id_token_hint".to_owned(), signed_in.tokens.id_token.clone())];
        let reply = scene.broker.end_session(pairs, &signed_in.cookies).await;
        assert!(!matches!(reply, Reply::ConfirmLogout { .. } | Reply::ErrorPage { .. }), "{reply:?}");
        assert!(scene.userinfo(&signed_in.tokens.access_token).await.is_none(), "its tokens stopped");
        let again = scene.authorize(&[], &signed_in.cookies).await;
        assert!(matches!(&again, Reply::Redirect { location, .. } if location.starts_with(&scene.op.issuer)), "{again:?}");
    }
}
