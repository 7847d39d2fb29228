//! The token endpoint and userinfo.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::{handle, Broker};
use crate::core::application::AccessTokenFormat;
use crate::core::application::{Application, ClientType};
use crate::core::claims::{self, grants_refresh_token, Claims};
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::core::user::UserView;
use crate::core::Timestamp;
use crate::crypto::random_token;
use crate::oidc::keys::{at_hash, SigningAlg, SigningKey};
use crate::store::{FirstTokens, Grant, NextTokens, Redemption, RevokedTokens, Rotation, StoreError};

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// A signed-in person as an application that does not read ID tokens is told of
/// them, with what decides how much: the token's scope, whether ssogate vouches for
/// their email (OIDC Core §5.7: the organization's own domains, verified by the IdP),
/// and whether the application keeps its secrets (only those get the IdP's raw
/// claims, less the groups claim, which the `groups` scope governs).
pub struct Person {
    pub user: UserView,
    pub scope: String,
    pub email_vouched: bool,
    /// The claim the IdP's groups come in, as the connection reads it.
    pub group_claim: Option<String>,
    pub confidential_client: bool,
}

#[derive(Debug, Serialize)]
pub struct TokenReply {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    #[error("the access token is missing, unknown, expired or revoked")]
    InvalidToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Access tokens used or issued in the last [`TOKEN_RECHECK`], so userinfo answers
/// from memory. An entry is trusted that long and then asked of the store again
/// (which also sees revocations made by other replicas); revocations made here, or
/// announced by other replicas, remove entries at once. Memory follows activity:
/// a token unused for the recheck period holds nothing.
pub struct TokenCache {
    entries: moka::sync::Cache<String, Arc<CachedToken>>,
}

pub struct CachedToken {
    /// The userinfo answer, already serialized.
    pub body: Arc<[u8]>,
    pub expires_at: Timestamp,
    /// What introspection tells of it besides the user.
    pub issued: IssuedTo,
}

/// Whom an access token was issued to, and for what.
pub struct IssuedTo {
    pub application_id: String,
    pub client_id: String,
    pub audience: String,
    pub scope: String,
    pub session_id: String,
    pub issued_at: Timestamp,
}

/// How long a cached token is trusted before the store is asked again.
pub const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// A ceiling, whatever the traffic (tokens beyond it are served from the store).
const MAX_CACHED_TOKENS: u64 = 500_000;

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache { entries: moka::sync::Cache::builder().max_capacity(MAX_CACHED_TOKENS).time_to_live(TOKEN_RECHECK).build() }
    }
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Arc<CachedToken>> {
        self.entries.get(hash)
    }

    fn put(&self, hash: String, token: Arc<CachedToken>) {
        self.entries.insert(hash, token);
    }

    pub fn remove(&self, hashes: &[String]) {
        for h in hashes {
            self.entries.invalidate(h);
        }
    }

    pub fn clear(&self) {
        self.entries.invalidate_all();
    }
}

/// Whether a code exchange must repeat the authorization request's `redirect_uri`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectUriAtExchange {
    /// RFC 6749 §4.1.3: it must, byte for byte.
    Required,
    /// WorkOS's `/sso/token` never sends it: if sent it must match; if not, the code
    /// must be bound otherwise (RFC 9700 §4.5): by PKCE, or by being able to have
    /// gone to one URI only, the client's one registered URI.
    IfSent,
}

/// Whether a code just spent was the caller's to spend, as it asked for it.
fn redeemed_code_fits(
    grant: &Grant,
    app: &Application,
    form: &HashMap<String, String>,
    redirect_uri: RedirectUriAtExchange,
    t: Timestamp,
) -> Result<(), OAuthError> {
    if grant.application_id != app.id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if grant.code_expires_at < t {
        return Err(invalid_grant("the code has expired"));
    }
    let sent = form.get("redirect_uri");
    let bound_without_it = grant.code_challenge.is_some() || app.redirect_uris.len() == 1;
    if sent.is_none() && redirect_uri == RedirectUriAtExchange::IfSent && !bound_without_it {
        return Err(invalid_grant(
            "without redirect_uri, a code of an application with several redirect URIs needs PKCE (getAuthorizationUrlWithPKCE)",
        ));
    }
    if sent.is_some_and(|r| r != &grant.redirect_uri) || (sent.is_none() && redirect_uri == RedirectUriAtExchange::Required) {
        return Err(invalid_grant("redirect_uri does not match the authorization request"));
    }
    match (&grant.code_challenge, form.get("code_verifier")) {
        (Some(ch), Some(v)) if pkce_ok(ch, v) => Ok(()),
        (Some(_), _) => Err(invalid_grant("the PKCE code_verifier does not match")),
        (None, Some(_)) => Err(invalid_grant("a code_verifier was sent for a request without code_challenge")),
        (None, None) => Ok(()),
    }
}

/// A refresh may ask for less than was granted, never more (RFC 6749 §6).
fn narrowed_scope(requested: Option<&String>, granted: &str) -> Result<String, OAuthError> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else { return Ok(granted.to_owned()) };
    let granted: Vec<&str> = granted.split(' ').collect();
    let mut kept: Vec<&str> = vec![];
    for s in requested.split_whitespace() {
        if !granted.contains(&s) {
            return Err(OAuthError::new(ErrorCode::InvalidScope, format!("`{s}` was not granted; a refresh cannot widen the scope")));
        }
        if !kept.contains(&s) {
            kept.push(s);
        }
    }
    if !kept.contains(&"openid") {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "scope must include `openid`"));
    }
    Ok(kept.join(" "))
}

/// The user's claims a grant stores (what its tokens carry).
fn stored_claims(grant: &Grant) -> Result<Claims, OAuthError> {
    match &grant.claims {
        Value::Object(claims) => Ok(claims.clone()),
        _ => Err(OAuthError::new(ErrorCode::ServerError, "stored claims are unreadable")),
    }
}

fn pkce_ok(challenge: &str, verifier: &str) -> bool {
    let valid_verifier =
        (43..=128).contains(&verifier.len()) && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    valid_verifier
        && aws_lc_rs::constant_time::verify_slices_are_equal(URL_SAFE_NO_PAD.encode(d.as_ref()).as_bytes(), challenge.as_bytes()).is_ok()
}

impl Broker {
    /// The token endpoint, for an authenticated client: `authorization_code`, and
    /// `refresh_token` (RFC 6749 §6) for grants that asked for `offline_access`.
    pub async fn token(&self, app: &Application, form: HashMap<String, String>) -> Result<TokenReply, OAuthError> {
        if app.client_type == ClientType::ResourceServer {
            return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "a resource server signs nobody in; it may only introspect tokens"));
        }
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => Ok(self.exchange_code(app, &form, RedirectUriAtExchange::Required).await?.0),
            Some("refresh_token") => self.refresh(app, &form).await,
            Some(other) => Err(OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type `{other}` is not supported"))),
            None => Err(OAuthError::new(ErrorCode::InvalidRequest, "grant_type is missing")),
        }
    }

    /// A code exchange: the token response, and the user it signed in.
    pub(super) async fn exchange_code(
        &self,
        app: &Application,
        form: &HashMap<String, String>,
        redirect_uri: RedirectUriAtExchange,
    ) -> Result<(TokenReply, Grant), OAuthError> {
        let client_id = &app.client_id;
        let code = form.get("code").ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "code is missing"))?;
        let t = self.clock.now();
        let code_hash = handle(code);
        // Minted before the exchange, so that it is one write; the grant decides
        // whether the refresh token is kept. A JWT carries the grant's claims, read
        // first (the exchange below still decides whether this code is spent).
        let access_token = match app.access_token_format {
            AccessTokenFormat::Opaque => random_token(""),
            AccessTokenFormat::Jwt => {
                let grant = self.store.grant(&code_hash).await?.ok_or_else(|| invalid_grant("the code is unknown or expired"))?;
                self.signed_access_token(app, &grant, &stored_claims(&grant)?, t)?
            }
        };
        let refresh_token = random_token("");
        let refresh_hash = handle(&refresh_token);
        let token_hash = handle(&access_token);
        let tokens =
            FirstTokens { access_hash: &token_hash, access_expires_at: t + self.lifetimes.access_token, refresh_hash: &refresh_hash };
        let grant = match self.store.redeem_grant(&code_hash, tokens, t).await? {
            Redemption::Fresh(g, session_expires_at) => {
                if session_expires_at.is_none_or(|e| e <= t) {
                    self.store.revoke_tokens(RevokedTokens::Family(g.code_hash.clone())).await?;
                    return Err(invalid_grant("the sign-in session has ended"));
                }
                g
            }
            Redemption::Unknown => return Err(invalid_grant("the code is unknown or expired")),
            Redemption::Replayed { revoked_token_hashes } => {
                self.forget_tokens(revoked_token_hashes).await;
                tracing::warn!(client_id = %client_id, "authorization code replayed; its tokens are revoked");
                return Err(invalid_grant("the code was already used; the tokens issued with it are now revoked"));
            }
        };
        // The checks run after the code is spent: a code sent with the wrong client,
        // redirect URI or verifier must not stay usable for a second try; and what the
        // exchange minted goes with it, so no unknown refresh token stays live.
        if let Err(refused) = redeemed_code_fits(&grant, app, form, redirect_uri, t) {
            let revoked = self.store.revoke_tokens(RevokedTokens::Family(grant.code_hash.clone())).await?;
            self.forget_tokens(revoked).await;
            return Err(refused);
        }
        // Not cached here: a replay of the code may revoke this token between its
        // redemption and a cache insert, which would then serve it for the recheck
        // window. Its first userinfo reads the store, which knows.
        let refresh_token = grants_refresh_token(&grant.scope).then_some(refresh_token);
        let reply = self.reply(app, &grant, stored_claims(&grant)?, access_token, grant.nonce.as_deref(), refresh_token, t)?;
        Ok((reply, *grant))
    }

    /// A refresh (RFC 6749 §6): the refresh token is spent and replaced, and the
    /// tokens carry the user as they are now (groups, role, profile). A spent one
    /// presented again revokes its whole family (RFC 9700 §4.14.2); none works once
    /// the session it was issued under has ended (the user signed out, was signed out
    /// by an admin or their IdP, or was deprovisioned).
    async fn refresh(&self, app: &Application, form: &HashMap<String, String>) -> Result<TokenReply, OAuthError> {
        let presented = form.get("refresh_token").ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is missing"))?;
        let hash = handle(presented);
        let Some(found) = self.store.refresh_token(&hash).await? else {
            return Err(invalid_grant("the refresh token is unknown"));
        };
        let grant = found.grant;
        // Bound to its client (RFC 6749 §6, §10.4): another client's token is refused
        // without spending it, so it cannot be used to revoke the owner's family.
        if grant.application_id != app.id {
            return Err(invalid_grant("the refresh token was issued to another client"));
        }
        if found.revoked {
            return Err(invalid_grant("the refresh token was revoked"));
        }
        if found.spent {
            let revoked = self.store.revoke_tokens(RevokedTokens::Family(grant.code_hash.clone())).await?;
            return Err(self.refresh_reused(app, revoked).await);
        }
        let scope = narrowed_scope(form.get("scope"), &grant.scope)?;
        let t = self.clock.now();
        if self.use_session(&grant.session_hash).await?.is_none() {
            return Err(invalid_grant("the sign-in session has ended"));
        }
        let user = self.store.get_user(&grant.user_id).await?.filter(|u| u.user.active);
        let user = user.ok_or_else(|| invalid_grant("the user is no longer active"))?;
        let org = self.config.organization(self.store.as_ref(), &user.user.organization_id).await?;
        let org = org.ok_or_else(|| invalid_grant("the organization was removed"))?;
        let entitlements = self.config.entitlements(self.store.as_ref(), &org.id).await?;
        if let Some(why) = entitlements.sso_refusal(t) {
            return Err(invalid_grant(&why));
        }
        let scopes: Vec<String> = scope.split(' ').map(str::to_owned).collect();
        let claims = claims::user_claims(&user, &org, &scopes);
        // These tokens carry the scope asked for; the family keeps the grant's
        // (RFC 6749 §6: the next refresh token's scope is the one presented).
        let issued = Grant { scope, ..grant };
        let access_token = self.access_token(app, &issued, &claims, t)?;
        let refresh_token = random_token("");
        let (access_hash, refresh_hash) = (handle(&access_token), handle(&refresh_token));
        let stored = Value::Object(claims.clone());
        // Signed before the rotation: once it is committed, a failure would leave the
        // client holding a spent token, and its retry would revoke the family.
        // OIDC Core §12.2: same iss, sub, aud, azp and auth_time; a new iat; no nonce.
        let reply = self.reply(app, &issued, claims, access_token, None, Some(refresh_token), t)?;
        let next = NextTokens {
            access_hash: &access_hash,
            access_expires_at: t + self.lifetimes.access_token,
            refresh_hash: &refresh_hash,
            claims: &stored,
            scope: &issued.scope,
            at: t,
        };
        match self.store.rotate_refresh_token(&hash, next).await? {
            Rotation::Rotated { replaced_token_hash } => self.forget_tokens(replaced_token_hash.into_iter().collect()).await,
            Rotation::Reused { revoked_token_hashes } => return Err(self.refresh_reused(app, revoked_token_hashes).await),
            Rotation::Revoked => return Err(invalid_grant("the refresh token was revoked")),
        }
        Ok(reply)
    }

    async fn refresh_reused(&self, app: &Application, revoked: Vec<String>) -> OAuthError {
        self.forget_tokens(revoked).await;
        tracing::warn!(client_id = %app.client_id, "a spent refresh token was presented again; its grant is revoked");
        invalid_grant("the refresh token was already used; every token of its grant is now revoked")
    }

    /// A new access token: a random handle, or a JWT (RFC 9068) for an application
    /// that asked for them.
    fn access_token(&self, app: &Application, grant: &Grant, claims: &Claims, t: Timestamp) -> Result<String, OAuthError> {
        match app.access_token_format {
            AccessTokenFormat::Opaque => Ok(random_token("")),
            AccessTokenFormat::Jwt => self.signed_access_token(app, grant, claims, t),
        }
    }

    fn signed_access_token(&self, app: &Application, grant: &Grant, claims: &Claims, t: Timestamp) -> Result<String, OAuthError> {
        let body = self.jwt_access_token(app, grant, claims, t);
        self.signer_for(app)?.sign_jwt_typed(&body, "at+jwt").map_err(|_| OAuthError::new(ErrorCode::ServerError, "signing failed"))
    }

    fn signer_for(&self, app: &Application) -> Result<Arc<SigningKey>, OAuthError> {
        let alg = SigningAlg::parse(&app.id_token_signed_response_alg).unwrap_or(SigningAlg::RS256);
        self.keys.signer(alg).ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "no signing key"))
    }

    /// The token response, with an ID token for `claims`.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        app: &Application,
        grant: &Grant,
        claims: Claims,
        access_token: String,
        nonce: Option<&str>,
        refresh_token: Option<String>,
        t: Timestamp,
    ) -> Result<TokenReply, OAuthError> {
        let mut id_claims = claims;
        id_claims.insert("iss".into(), self.issuer.clone().into());
        id_claims.insert("aud".into(), app.client_id.clone().into());
        id_claims.insert("azp".into(), app.client_id.clone().into());
        id_claims.insert("iat".into(), t.unix_timestamp().into());
        id_claims.insert("exp".into(), (t + self.lifetimes.id_token).unix_timestamp().into());
        id_claims.insert("auth_time".into(), grant.auth_time.unix_timestamp().into());
        id_claims.insert("at_hash".into(), at_hash(&access_token).into());
        if !grant.session_id.is_empty() {
            // Back-channel logout tokens name the session by this.
            id_claims.insert("sid".into(), grant.session_id.clone().into());
        }
        if let Some(n) = nonce {
            id_claims.insert("nonce".into(), n.into());
        }
        let id_token = self.signer_for(app)?.sign_jwt(&id_claims).map_err(|_| OAuthError::new(ErrorCode::ServerError, "signing failed"))?;
        Ok(TokenReply {
            access_token,
            token_type: "Bearer",
            expires_in: self.lifetimes.access_token.as_secs(),
            id_token,
            scope: grant.scope.clone(),
            refresh_token,
        })
    }

    /// The claims of a JWT access token (RFC 9068 §2.2): who, for which client and
    /// API, until when, and the user's organization, role and groups (§2.2.3.1).
    fn jwt_access_token(&self, app: &Application, grant: &Grant, claims: &Claims, t: Timestamp) -> Claims {
        let mut c = Claims::new();
        c.insert("iss".into(), self.issuer.clone().into());
        c.insert("aud".into(), app.access_token_audience.clone().unwrap_or_else(|| app.client_id.clone()).into());
        c.insert("sub".into(), grant.user_id.clone().into());
        c.insert("client_id".into(), app.client_id.clone().into());
        c.insert("iat".into(), t.unix_timestamp().into());
        c.insert("exp".into(), (t + self.lifetimes.access_token).unix_timestamp().into());
        c.insert("jti".into(), random_token("").into());
        c.insert("scope".into(), grant.scope.clone().into());
        c.insert("auth_time".into(), grant.auth_time.unix_timestamp().into());
        if !grant.session_id.is_empty() {
            c.insert("sid".into(), grant.session_id.clone().into());
        }
        for name in ["org_id", "role", "groups"] {
            if let Some(v) = claims.get(name) {
                c.insert(name.into(), v.clone());
            }
        }
        // RFC 9068 §2.2.3.1 names roles as a list (`role` is ssogate's own claim).
        if let Some(role) = claims.get("role") {
            c.insert("roles".into(), vec![role.clone()].into());
        }
        c
    }

    /// A code exchange for an application that wants the person, not an ID token
    /// (WorkOS's `/sso/token`): the tokens, and the person as they are now. What
    /// is minted goes again if the person cannot be told (deactivated meanwhile,
    /// or the store failed).
    pub async fn exchange_code_for_person(
        &self,
        app: &Application,
        form: &HashMap<String, String>,
    ) -> Result<(TokenReply, Person), OAuthError> {
        if app.client_type == ClientType::ResourceServer {
            return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "a resource server signs nobody in; it may only introspect tokens"));
        }
        let (reply, grant) = self.exchange_code(app, form, RedirectUriAtExchange::IfSent).await?;
        let person = match self.person(&grant.user_id, app.client_type, &grant.scope).await {
            Ok(Some(person)) => person,
            failed => {
                let revoked = self.store.revoke_tokens(RevokedTokens::Family(grant.code_hash.clone())).await?;
                self.forget_tokens(revoked).await;
                failed?;
                return Err(invalid_grant("the user is no longer active"));
            }
        };
        Ok((reply, person))
    }

    /// The person a live access token was issued for, as they are now.
    pub async fn person_of_access_token(&self, access_token: &str) -> Result<Option<Person>, StoreError> {
        let Some(token) = self.live_access_token(&handle(access_token)).await? else { return Ok(None) };
        let claims: Value = serde_json::from_slice(&token.body).unwrap_or_default();
        let Some(sub) = claims.get("sub").and_then(Value::as_str) else { return Ok(None) };
        let client_type = self.config.application(self.store.as_ref(), &token.issued.client_id).await?.map(|(app, _)| app.client_type);
        let Some(client_type) = client_type else { return Ok(None) };
        self.person(sub, client_type, &token.issued.scope).await
    }

    async fn person(&self, user_id: &str, client_type: ClientType, scope: &str) -> Result<Option<Person>, StoreError> {
        let Some(user) = self.store.get_user(user_id).await?.filter(|u| u.user.active) else { return Ok(None) };
        let Some(org) = self.config.organization(self.store.as_ref(), &user.user.organization_id).await? else { return Ok(None) };
        let connection = match &user.user.connection_id {
            Some(id) => self.config.connection(self.store.as_ref(), id).await?,
            None => None,
        };
        let email_vouched = claims::email_vouched_for(&user.user, &org);
        Ok(Some(Person {
            user,
            scope: scope.to_owned(),
            email_vouched,
            group_claim: connection.map(|c| c.group_sync.claim),
            confidential_client: client_type == ClientType::Confidential,
        }))
    }

    /// The claims for a bearer access token, from memory when this process has seen it.
    pub async fn userinfo(&self, access_token: &str) -> Result<Arc<[u8]>, UserinfoError> {
        let live = self.live_access_token(&handle(access_token)).await?;
        live.map(|token| token.body.clone()).ok_or(UserinfoError::InvalidToken)
    }

    /// An access token that is live (issued, not revoked nor expired, its session
    /// live), from memory when this process has seen it lately.
    pub(super) async fn live_access_token(&self, hash: &str) -> Result<Option<Arc<CachedToken>>, StoreError> {
        let t = self.clock.now();
        if let Some(hit) = self.tokens.get(hash) {
            return Ok((hit.expires_at > t).then_some(hit));
        }
        // Checked against the store once per TOKEN_RECHECK per token: the token,
        // and that its session is live (which also keeps the session from idling out).
        let live = match self.store.issued_token(hash).await?.filter(|tok| !tok.revoked && tok.expires_at > t) {
            Some(token) => self.use_session(&token.session_hash).await?.map(|_| token),
            None => None,
        };
        let Some(token) = live else {
            self.tokens.remove(&[hash.to_owned()]);
            return Ok(None);
        };
        let cached = Arc::new(CachedToken {
            body: token.claims.to_string().into_bytes().into(),
            expires_at: token.expires_at,
            issued: IssuedTo {
                application_id: token.application_id,
                client_id: token.client_id,
                audience: token.audience,
                scope: token.scope,
                session_id: token.session_id,
                issued_at: token.issued_at,
            },
        });
        self.tokens.put(hash.to_owned(), cached.clone());
        Ok(Some(cached))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_verification() {
        assert!(pkce_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!pkce_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
        assert!(!pkce_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "short"));
    }
}
