//! ssogate as the relying party of one connection's identity provider: one
//! [`RelyingParty`] holds the IdP's metadata, the client credentials and the callback
//! URI, runs the authorization request, the code exchange, refresh and the checks of
//! what comes back (ID tokens, userinfo, back-channel logout tokens, distributed
//! claims), and follows the IdP when it moves an endpoint. What the IdP says of a
//! user is only readable once verified, as a [`VerifiedIdentity`].

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::id_token::{self, Claims, Expected, IdTokenError, Nonce};
use super::metadata::ProviderMetadata;
use super::provider::Providers;
use super::UpstreamError;
use crate::core::claims;
use crate::core::connection::Connection;
use crate::crypto::random_token;
use crate::telemetry;

/// A connection's client secret: shown by nothing (`Debug` redacts it), read with
/// [`expose`](Self::expose) where it is sent.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: String) -> Self {
        ClientSecret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// What the application's request passes on to the IdP.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassedOn<'a> {
    pub login_hint: Option<&'a str>,
    pub prompt_login: bool,
    /// The application's `max_age`, so the IdP re-authenticates too.
    pub max_age: Option<u64>,
}

/// An authorization request made (OIDC Core §3.1.2.1): where to send the browser,
/// and what the login must keep to check the answer.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    /// RFC 7636, where the IdP offers S256.
    pub pkce_verifier: Option<String>,
}

/// Why the IdP's answer at the callback is not a code to exchange.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer came from another identity provider than the one asked (RFC 9207 iss mismatch)")]
    WrongIssuer,
    #[error("the identity provider's answer lacks the iss parameter it promises (RFC 9207)")]
    MissingIssuer,
    /// The IdP refused the sign-in (RFC 6749 §4.1.2.1), in its own words.
    #[error("the identity provider refused the sign-in ({error}{detail})")]
    Refused { error: String, detail: String },
    #[error("the identity provider's answer has no code")]
    NoCode,
}

/// The tokens an IdP issued. `Debug` tells which arrived, never what they are.
#[derive(Clone, Deserialize)]
pub struct IssuedTokens {
    pub access_token: Option<String>,
    /// The ID token as sent; its claims are read by verifying it.
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |t: &Option<String>| if t.is_some() { "[redacted]" } else { "none" };
        f.debug_struct("IssuedTokens")
            .field("access_token", &given(&self.access_token))
            .field("id_token", &given(&self.id_token))
            .field("refresh_token", &given(&self.refresh_token))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Who signed in, as the IdP's verified answer says.
#[derive(Debug)]
pub struct VerifiedIdentity {
    pub tokens: IssuedTokens,
    /// The IdP's subject, never empty (the ID token was refused without one).
    pub sub: String,
    /// The claims of this answer's ID token or, after a refresh that brought none
    /// (OIDC Core §12.2), of the previous one.
    pub id_claims: Claims,
    /// Whether this answer brought an ID token.
    pub fresh_id_token: bool,
    pub userinfo: Option<Claims>,
}

impl VerifiedIdentity {
    /// The ID token's claims, with userinfo filling what they lack.
    pub fn profile(&self) -> Claims {
        claims::merge(&self.id_claims, self.userinfo.as_ref())
    }
}

/// Who a refreshed answer must be about: the session's subject, the nonce of its
/// sign-in, and its last ID token's claims.
pub struct Previous<'a> {
    pub sub: &'a str,
    pub nonce: &'a str,
    pub id_claims: &'a Claims,
}

#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// Why a login failed at the IdP's end, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the identity provider refused the token request: {error}{detail}")]
    TokenRejected {
        /// The OAuth error code (RFC 6749 §5.2), or `http_<status>` without one.
        error: String,
        detail: String,
    },
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the identity provider's answer has no access token")]
    NoAccessToken,
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error("the userinfo `sub` does not match the ID token's")]
    UserinfoSubjectMismatch,
    #[error("the refreshed ID token names another subject")]
    SubjectChanged,
}

impl LoginError {
    /// The endpoint answered that it does not exist (404, 405, 410).
    pub fn endpoint_gone(&self) -> bool {
        match self {
            LoginError::TokenRejected { error, .. } => ["http_404", "http_405", "http_410"].contains(&error.as_str()),
            LoginError::Upstream(UpstreamError::BadStatus(s)) => [404, 405, 410].contains(s),
            _ => false,
        }
    }
}

/// The IdP endpoints a step talks to, each named by the discovery document.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Token,
    Userinfo,
    Jwks,
}

impl Endpoint {
    fn of(self, m: &ProviderMetadata) -> Option<&str> {
        match self {
            Endpoint::Token => m.token_endpoint.as_deref(),
            Endpoint::Userinfo => m.userinfo_endpoint.as_deref(),
            Endpoint::Jwks => m.jwks_uri.as_deref(),
        }
    }

    /// Whether a step's failure may mean the IdP moved this endpoint: it answered
    /// that it does not exist, or (keys) the token names a key the old JWKS lacks.
    fn may_have_moved(self, e: &LoginError) -> bool {
        e.endpoint_gone() || matches!((self, e), (Endpoint::Jwks, LoginError::IdToken(IdTokenError::UnknownKey(_))))
    }
}

/// An IdP as its discovery document describes it: enough to send a browser there,
/// read its answer and fetch what it published, before any client credential is
/// needed (so a secret that cannot be read fails only what needs it).
pub struct Discovery<'a> {
    providers: &'a Providers,
    connection: &'a Connection,
    /// The redirect URI the IdP answers at (and that a code exchange repeats).
    callback: String,
    /// The IdP's discovery document, as the last step used it.
    metadata: Arc<ProviderMetadata>,
}

impl<'a> Discovery<'a> {
    /// The connection's IdP, with its metadata (cached).
    pub async fn new(providers: &'a Providers, connection: &'a Connection, callback: String) -> Result<Self, UpstreamError> {
        let metadata = providers.metadata(&connection.discovery_url).await?;
        Ok(Self::with_metadata(providers, connection, callback, metadata))
    }

    /// The same, with metadata read elsewhere (the connection test reads it fresh).
    pub fn with_metadata(providers: &'a Providers, connection: &'a Connection, callback: String, metadata: Arc<ProviderMetadata>) -> Self {
        Discovery { providers, connection, callback, metadata }
    }

    /// The relying party, with the connection's client credentials.
    pub fn authenticate(self, secret: ClientSecret) -> RelyingParty<'a> {
        RelyingParty { idp: self, secret }
    }

    /// The authorization request (OIDC Core §3.1.2.1), with a fresh state and nonce,
    /// and PKCE (RFC 7636) where the IdP offers S256.
    pub fn begin(&self, passed_on: PassedOn) -> Result<Authorization, UpstreamError> {
        let m = &self.metadata;
        let (state, nonce) = (random_token(""), random_token(""));
        let pkce_verifier =
            m.code_challenge_methods_supported.as_ref().is_some_and(|ms| ms.iter().any(|x| x == "S256")).then(|| random_token(""));
        let endpoint = m.authorization_endpoint.as_deref().unwrap_or_default();
        let mut url = Url::parse(endpoint).map_err(|e| UpstreamError::Malformed(format!("authorization_endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.connection.client_id)
                .append_pair("redirect_uri", &self.callback)
                .append_pair("scope", &self.connection.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce);
            if let Some(verifier) = &pkce_verifier {
                q.append_pair("code_challenge", &pkce_challenge(verifier)).append_pair("code_challenge_method", "S256");
            }
            if let Some(h) = passed_on.login_hint {
                q.append_pair("login_hint", h);
            }
            if let Some(max_age) = passed_on.max_age {
                q.append_pair("max_age", &max_age.to_string());
            }
            if passed_on.prompt_login {
                q.append_pair("prompt", "login");
            }
        }
        Ok(Authorization { url: url.into(), state, nonce, pkce_verifier })
    }

    /// The code in the IdP's answer at the callback, once the answer is known to come
    /// from this IdP (RFC 9207 `iss`, where sent or promised) and is not a refusal.
    pub fn code_in<'p>(&self, params: &'p HashMap<String, String>) -> Result<&'p str, AnswerError> {
        match params.get("iss") {
            Some(iss) if *iss != self.metadata.issuer => return Err(AnswerError::WrongIssuer),
            None if self.metadata.authorization_response_iss_parameter_supported => return Err(AnswerError::MissingIssuer),
            _ => {}
        }
        if let Some(error) = params.get("error") {
            let detail = params.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
            return Err(AnswerError::Refused { error: error.clone(), detail });
        }
        params.get("code").map(String::as_str).ok_or(AnswerError::NoCode)
    }

    /// A claim the IdP sent elsewhere (OIDC Core §5.6.2 distributed claims), found in
    /// `claims` by its `_claim_names` and `_claim_sources`, fetched with the source's
    /// access token or else the user's, through the guarded client. Two answers are
    /// understood: Microsoft Entra ID's group overage, whose source is a Graph
    /// `getMemberObjects` call answering `{"value": [group ids]}` (given as group objects
    /// with ids, which mappings match by id); and the standard one, a JWT the IdP signed
    /// for this user (`iss` and `sub` checked). `None`: `claims` does not name a source.
    pub async fn distributed_claim(
        &self,
        claims: &Claims,
        claim: &str,
        sub: &str,
        access_token: &str,
    ) -> Result<Option<Value>, LoginError> {
        let (providers, m) = (self.providers, &self.metadata);
        let malformed = |why: &str| LoginError::Upstream(UpstreamError::Malformed(format!("distributed `{claim}` claim: {why}")));
        let Some(source_name) = crate::core::group_sync::distributed_source(claims, claim) else { return Ok(None) };
        let source_name = source_name.as_str().ok_or_else(|| malformed("the source name is not a string"))?;
        let source = claims.get("_claim_sources").and_then(|s| s.get(source_name)).ok_or_else(|| malformed("no such source"))?;
        let endpoint = source.get("endpoint").and_then(Value::as_str).ok_or_else(|| malformed("the source has no endpoint"))?;
        let token = source.get("access_token").and_then(Value::as_str).unwrap_or(access_token);
        let client = providers.client();
        let mut url = client.checked(endpoint)?;
        if url.path().ends_with("/getMemberObjects") {
            // Entra ID still names the retired Azure AD Graph; Microsoft Graph answers the same call.
            if url.host_str() == Some("graph.windows.net") {
                let user = url.path_segments().and_then(|s| s.rev().nth(1)).ok_or_else(|| malformed("no user in the Graph endpoint"))?;
                url = client.checked(&format!("https://graph.microsoft.com/v1.0/users/{user}/getMemberObjects"))?;
            }
            let req =
                client.request(reqwest::Method::POST, url).bearer_auth(token).json(&serde_json::json!({"securityEnabledOnly": false}));
            let (status, _, body) = client.send(req).await?;
            if !status.is_success() {
                return Err(UpstreamError::BadStatus(status.as_u16()).into());
            }
            let answer: Value = super::http::parse(&body)?;
            let ids = answer.get("value").and_then(Value::as_array).ok_or_else(|| malformed("the Graph answer has no `value`"))?;
            return Ok(Some(Value::Array(ids.iter().filter_map(Value::as_str).map(|id| serde_json::json!({"id": id})).collect())));
        }
        let req = client.request(reqwest::Method::GET, url).bearer_auth(token).header(reqwest::header::ACCEPT, "application/jwt");
        let (status, _, body) = client.send(req).await?;
        if !status.is_success() {
            return Err(UpstreamError::BadStatus(status.as_u16()).into());
        }
        let jwt = String::from_utf8_lossy(&body).trim().to_owned();
        let signed = with_signing_keys(providers, m, "distributed_claims", |keys| id_token::verify_signature(&jwt, keys, None)).await?;
        if signed.get("iss").and_then(Value::as_str) != Some(m.issuer.as_str()) || signed.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(malformed("the JWT is not the IdP's, or not about this user"));
        }
        Ok(signed.get(claim).cloned())
    }
}

/// The relying party of one connection, for one sign-in, refresh or logout.
pub struct RelyingParty<'a> {
    idp: Discovery<'a>,
    secret: ClientSecret,
}

impl<'a> RelyingParty<'a> {
    pub fn metadata(&self) -> &ProviderMetadata {
        &self.idp.metadata
    }

    /// Exchanges the code (RFC 6749 §4.1.3) and verifies the answer: its ID token
    /// (OIDC Core §3.1.3.7) with the nonce the request sent, then userinfo (§5.3.2).
    pub async fn exchange_code(
        &mut self,
        code: &str,
        pkce_verifier: Option<&str>,
        nonce: &str,
        now: i64,
    ) -> Result<VerifiedIdentity, LoginError> {
        let callback = self.idp.callback.clone();
        let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", callback.as_str())];
        if let Some(v) = pkce_verifier {
            form.push(("code_verifier", v));
        }
        let tokens = self.token_request(form).await?;
        let id_token = tokens.id_token.as_deref().ok_or(LoginError::NoIdToken)?;
        let (sub, id_claims) = self.verify_id_token(id_token, Nonce::Exactly(nonce), now).await?;
        let userinfo = match &tokens.access_token {
            Some(access_token) => self.userinfo(access_token, &sub).await?,
            None => None,
        };
        Ok(VerifiedIdentity { tokens, sub, id_claims, fresh_id_token: true, userinfo })
    }

    /// Trades a refresh token for fresh tokens (RFC 6749 §6). The answer is verified
    /// apart, by [`verify_refresh`](Self::verify_refresh), so that the tokens can be
    /// kept first: an IdP that rotates refresh tokens refuses the old one.
    pub async fn refresh(&mut self, refresh_token: &str) -> Result<IssuedTokens, LoginError> {
        self.token_request(vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    /// What a refresh answer says of the user: a new ID token must be about the same
    /// subject, with no nonce or the sign-in's (OIDC Core §12.2); userinfo is read anew.
    pub async fn verify_refresh(
        &mut self,
        tokens: IssuedTokens,
        previous: &Previous<'_>,
        now: i64,
    ) -> Result<VerifiedIdentity, LoginError> {
        let access_token = tokens.access_token.clone().ok_or(LoginError::NoAccessToken)?;
        let (id_claims, fresh_id_token) = match &tokens.id_token {
            Some(id_token) => {
                let (sub, claims) = self.verify_id_token(id_token, Nonce::AbsentOr(previous.nonce), now).await?;
                if sub != previous.sub {
                    return Err(LoginError::SubjectChanged);
                }
                (claims, true)
            }
            None => (previous.id_claims.clone(), false),
        };
        let userinfo = self.userinfo(&access_token, previous.sub).await?;
        Ok(VerifiedIdentity { tokens, sub: previous.sub.to_owned(), id_claims, fresh_id_token, userinfo })
    }

    /// A back-channel logout token (OIDC Back-Channel Logout 1.0 §2.6), verified.
    pub async fn verify_logout_token(&mut self, token: &str, now: i64) -> Result<Claims, LoginError> {
        self.verified("logout_token", token, Nonce::Exactly(""), now, id_token::verify_logout_token).await
    }

    /// The IdP's verdict on the client credentials: the OAuth error of a token request
    /// with a code that cannot be valid (`invalid_grant`: the client authenticated;
    /// `invalid_client`: it did not, RFC 6749 §5.2), if it gave one.
    pub async fn probe_credentials(&self) -> Option<String> {
        const NO_SUCH_CODE: &str = "ssogate-connection-test-not-a-code";
        let form = vec![("grant_type", "authorization_code"), ("code", NO_SUCH_CODE), ("redirect_uri", self.idp.callback.as_str())];
        match token_request(self.idp.providers, &self.idp.metadata, self.idp.connection, &self.secret, form).await {
            Err(LoginError::TokenRejected { error, .. }) => Some(error),
            _ => None,
        }
    }

    async fn token_request(&mut self, form: Vec<(&str, &str)>) -> Result<IssuedTokens, LoginError> {
        let (providers, connection, secret) = (self.idp.providers, self.idp.connection, &self.secret);
        following_moves(providers, &connection.discovery_url, &mut self.idp.metadata, Endpoint::Token, |m| {
            let form = form.clone();
            async move { token_request(providers, &m, connection, secret, form).await }
        })
        .await
    }

    /// An ID token verified: its subject and claims.
    async fn verify_id_token(&mut self, token: &str, nonce: Nonce<'_>, now: i64) -> Result<(String, Claims), LoginError> {
        let claims = self.verified("id_token", token, nonce, now, id_token::verify).await?;
        let sub = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(IdTokenError::MissingSubject)?.to_owned();
        Ok((sub, claims))
    }

    /// A token the IdP signed for this client, checked by `verify` against the IdP's
    /// keys (fetched again once if it names an unknown one; refusals counted as `kind`).
    async fn verified(
        &mut self,
        kind: &'static str,
        token: &str,
        nonce: Nonce<'_>,
        now: i64,
        verify: fn(&str, &[Jwk], &Expected) -> Result<Claims, IdTokenError>,
    ) -> Result<Claims, LoginError> {
        let (providers, connection, hmac_secret) =
            (self.idp.providers, self.idp.connection, hmac_secret(self.idp.connection, &self.secret));
        following_moves(providers, &connection.discovery_url, &mut self.idp.metadata, Endpoint::Jwks, |m| async move {
            let expected = Expected { issuer: &m.issuer, client_id: &connection.client_id, nonce, hmac_secret, now };
            with_signing_keys(providers, &m, kind, |keys| verify(token, keys, &expected)).await
        })
        .await
    }

    /// Userinfo, where the IdP has the endpoint; its `sub` must be the ID token's
    /// (OIDC Core §5.3.2).
    async fn userinfo(&mut self, access_token: &str, sub: &str) -> Result<Option<Claims>, LoginError> {
        if self.idp.metadata.userinfo_endpoint.is_none() {
            return Ok(None);
        }
        let providers = self.idp.providers;
        let url = &self.idp.connection.discovery_url;
        let claims = following_moves(providers, url, &mut self.idp.metadata, Endpoint::Userinfo, |m| async move {
            fetch_userinfo(providers, &m, access_token, sub).await
        })
        .await?;
        Ok(Some(claims))
    }
}

/// The client secret, when the connection opted in to HMAC-signed ID tokens.
fn hmac_secret<'s>(connection: &Connection, secret: &'s ClientSecret) -> Option<&'s str> {
    connection.allow_hmac_id_tokens.then_some(secret.expose())
}

/// Runs `step` against the IdP's `endpoint`. If it fails in a way that says the
/// endpoint may have moved, and the discovery document (read again at most once
/// per interval) names another one, runs it once more there: an IdP that moves an
/// endpoint is followed at once instead of when the cached document expires.
/// Safe for the token endpoint too: an endpoint that does not exist spent no code.
/// `metadata` is left as the last attempt used it.
async fn following_moves<T, Fut>(
    providers: &Providers,
    discovery_url: &str,
    metadata: &mut Arc<ProviderMetadata>,
    endpoint: Endpoint,
    step: impl Fn(Arc<ProviderMetadata>) -> Fut,
) -> Result<T, LoginError>
where
    Fut: std::future::Future<Output = Result<T, LoginError>>,
{
    match step(metadata.clone()).await {
        Err(e) if endpoint.may_have_moved(&e) => match providers.current_metadata(discovery_url).await {
            Some(fresh) if endpoint.of(&fresh) != endpoint.of(metadata) => {
                tracing::info!(discovery_url, ?endpoint, "the IdP moved an endpoint; using the one its discovery document names now");
                *metadata = fresh;
                step(metadata.clone()).await
            }
            _ => Err(e),
        },
        other => other,
    }
}

/// `application/x-www-form-urlencoded` encoding of a client credential, as
/// client_secret_basic requires before base64 (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A request to the token endpoint, authenticated with client_secret_basic unless
/// the IdP supports only client_secret_post.
async fn token_request<'a>(
    providers: &Providers,
    m: &ProviderMetadata,
    c: &'a Connection,
    client_secret: &'a ClientSecret,
    mut form: Vec<(&'a str, &'a str)>,
) -> Result<IssuedTokens, LoginError> {
    let client = providers.client();
    let url = client.checked(m.token_endpoint.as_deref().unwrap_or_default())?;
    let use_post = m
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_some_and(|ms| !ms.iter().any(|x| x == "client_secret_basic") && ms.iter().any(|x| x == "client_secret_post"));
    let mut req = client.request(reqwest::Method::POST, url).header(reqwest::header::ACCEPT, "application/json");
    if use_post {
        form.push(("client_id", &c.client_id));
        form.push(("client_secret", client_secret.expose()));
    } else {
        let basic = STANDARD.encode(format!("{}:{}", form_encode(&c.client_id), form_encode(client_secret.expose())));
        req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
    }
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let req = req.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
    let (status, _, body) = client.send(req).await?;
    if status.is_server_error() {
        return Err(UpstreamError::BadStatus(status.as_u16()).into());
    }
    if !status.is_success() {
        return Err(match serde_json::from_slice::<OAuthError>(&body) {
            Ok(e) => LoginError::TokenRejected { error: e.error, detail: e.error_description.map(|d| format!(" {d}")).unwrap_or_default() },
            Err(_) => LoginError::TokenRejected { error: format!("http_{}", status.as_u16()), detail: String::new() },
        });
    }
    Ok(super::http::parse(&body)?)
}

/// Runs `check` with the IdP's signing keys, and once more with a fresh copy if the
/// token names a key the cached copy lacks (the IdP rotated its keys).
/// Refusals are counted by reason (`kind`: `id_token` or `logout_token`).
async fn with_signing_keys(
    providers: &Providers,
    m: &ProviderMetadata,
    kind: &'static str,
    check: impl Fn(&[Jwk]) -> Result<Claims, IdTokenError>,
) -> Result<Claims, LoginError> {
    let jwks_uri = m.jwks_uri.as_deref().unwrap_or_default();
    let keys = providers.signing_keys(jwks_uri, false).await?;
    let verdict = match check(&keys) {
        Err(IdTokenError::UnknownKey(_)) => check(&providers.signing_keys(jwks_uri, true).await?),
        other => other,
    };
    if let Err(e) = &verdict {
        telemetry::token_rejected(kind, e.reason());
    }
    Ok(verdict?)
}

/// Fetches userinfo; its `sub` must be the ID token's (OIDC Core §5.3.2).
async fn fetch_userinfo(providers: &Providers, m: &ProviderMetadata, access_token: &str, sub: &str) -> Result<Claims, LoginError> {
    let client = providers.client();
    let url = client.checked(m.userinfo_endpoint.as_deref().unwrap_or_default())?;
    let req = client.request(reqwest::Method::GET, url).bearer_auth(access_token).header(reqwest::header::ACCEPT, "application/json");
    let (status, _, body) = client.send(req).await?;
    if !status.is_success() {
        return Err(UpstreamError::BadStatus(status.as_u16()).into());
    }
    let claims: Claims = super::http::parse(&body)?;
    if claims.get("sub").and_then(Value::as_str) != Some(sub) {
        return Err(LoginError::UserinfoSubjectMismatch);
    }
    Ok(claims)
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
