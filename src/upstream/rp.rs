//! The relying-party side of a brokered login: the authorization request to the
//! customer's IdP, the code exchange, ID token validation and userinfo.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::id_token::{self, Claims, Expected, IdTokenError};
use super::metadata::ProviderMetadata;
use super::provider::Providers;
use super::UpstreamError;
use crate::core::connection::Connection;
use crate::telemetry;

/// What the authorization request carries.
pub struct AuthRequest<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub pkce_challenge: Option<&'a str>,
    pub redirect_uri: &'a str,
    pub login_hint: Option<&'a str>,
    pub prompt_login: bool,
    /// The application's `max_age`, passed on so the IdP re-authenticates too.
    pub max_age: Option<u64>,
}

pub fn supports_pkce(m: &ProviderMetadata) -> bool {
    m.code_challenge_methods_supported.as_ref().is_some_and(|ms| ms.iter().any(|x| x == "S256"))
}

/// The URL to send the browser to at the IdP.
pub fn authorization_url(m: &ProviderMetadata, c: &Connection, r: &AuthRequest) -> Result<String, UpstreamError> {
    let endpoint = m.authorization_endpoint.as_deref().unwrap_or_default();
    let mut url = Url::parse(endpoint).map_err(|e| UpstreamError::Malformed(format!("authorization_endpoint: {e}")))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &c.client_id)
            .append_pair("redirect_uri", r.redirect_uri)
            .append_pair("scope", &c.scopes.join(" "))
            .append_pair("state", r.state)
            .append_pair("nonce", r.nonce);
        if let Some(ch) = r.pkce_challenge {
            q.append_pair("code_challenge", ch).append_pair("code_challenge_method", "S256");
        }
        if let Some(h) = r.login_hint {
            q.append_pair("login_hint", h);
        }
        if let Some(max_age) = r.max_age {
            q.append_pair("max_age", &max_age.to_string());
        }
        if r.prompt_login {
            q.append_pair("prompt", "login");
        }
    }
    Ok(url.into())
}

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: Option<String>,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
    pub token_type: Option<String>,
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
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error("the userinfo `sub` does not match the ID token's")]
    UserinfoSubjectMismatch,
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

/// The IdP endpoints a login step talks to, each named by the discovery document.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint {
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

/// Runs `step` against the IdP's `endpoint`. If it fails in a way that says the
/// endpoint may have moved, and the discovery document (read again at most once
/// per interval) names another one, runs it once more there: an IdP that moves an
/// endpoint is followed at once instead of when the cached document expires.
/// Safe for the token endpoint too: an endpoint that does not exist spent no code.
/// `metadata` is left as the last attempt used it.
pub async fn following_moves<T, Fut>(
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

/// Exchanges the authorization code at the token endpoint.
pub async fn exchange_code(
    providers: &Providers,
    m: &ProviderMetadata,
    c: &Connection,
    client_secret: &str,
    code: &str,
    redirect_uri: &str,
    pkce_verifier: Option<&str>,
) -> Result<TokenResponse, LoginError> {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
    if let Some(v) = pkce_verifier {
        form.push(("code_verifier", v));
    }
    token_request(providers, m, c, client_secret, form).await
}

/// Trades a refresh token for fresh tokens (RFC 6749 §6).
pub async fn refresh(
    providers: &Providers,
    m: &ProviderMetadata,
    c: &Connection,
    client_secret: &str,
    refresh_token: &str,
) -> Result<TokenResponse, LoginError> {
    token_request(providers, m, c, client_secret, vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

/// A request to the token endpoint, authenticated with client_secret_basic unless
/// the IdP supports only client_secret_post.
async fn token_request<'a>(
    providers: &Providers,
    m: &ProviderMetadata,
    c: &'a Connection,
    client_secret: &'a str,
    mut form: Vec<(&'a str, &'a str)>,
) -> Result<TokenResponse, LoginError> {
    let client = providers.client();
    let url = client.checked(m.token_endpoint.as_deref().unwrap_or_default())?;
    let use_post = m
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_some_and(|ms| !ms.iter().any(|x| x == "client_secret_basic") && ms.iter().any(|x| x == "client_secret_post"));
    let mut req = client.request(reqwest::Method::POST, url).header(reqwest::header::ACCEPT, "application/json");
    if use_post {
        form.push(("client_id", &c.client_id));
        form.push(("client_secret", client_secret));
    } else {
        let basic = STANDARD.encode(format!("{}:{}", form_encode(&c.client_id), form_encode(client_secret)));
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

/// Validates the ID token, re-fetching the JWKS once if it names an unknown key.
pub async fn validate_id_token(
    providers: &Providers,
    m: &ProviderMetadata,
    token: &str,
    expected: &Expected<'_>,
) -> Result<Claims, LoginError> {
    with_signing_keys(providers, m, "id_token", |keys| id_token::verify(token, keys, expected)).await
}

/// Validates a back-channel logout token, like an ID token.
pub async fn validate_logout_token(
    providers: &Providers,
    m: &ProviderMetadata,
    token: &str,
    expected: &Expected<'_>,
) -> Result<Claims, LoginError> {
    with_signing_keys(providers, m, "logout_token", |keys| id_token::verify_logout_token(token, keys, expected)).await
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
pub async fn userinfo(providers: &Providers, m: &ProviderMetadata, access_token: &str, sub: &str) -> Result<Claims, LoginError> {
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

/// A claim the IdP sent elsewhere (OIDC Core §5.6.2 distributed claims), found in
/// `claims` by its `_claim_names` and `_claim_sources`, fetched with the source's
/// access token or else the user's, through the guarded client. Two answers are
/// understood: Microsoft Entra ID's group overage, whose source is a Graph
/// `getMemberObjects` call answering `{"value": [group ids]}` (given as group objects
/// with ids, which mappings match by id); and the standard one, a JWT the IdP signed
/// for this user (`iss` and `sub` checked). `None`: `claims` does not name a source.
pub async fn distributed_claim(
    providers: &Providers,
    m: &ProviderMetadata,
    claims: &Claims,
    claim: &str,
    sub: &str,
    access_token: &str,
) -> Result<Option<Value>, LoginError> {
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
        let req = client.request(reqwest::Method::POST, url).bearer_auth(token).json(&serde_json::json!({"securityEnabledOnly": false}));
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

/// A PKCE verifier and its S256 challenge.
pub fn pkce_pair(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(pkce_pair("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
