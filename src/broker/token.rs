//! The token endpoint and userinfo.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::{handle, Broker};
use crate::core::application::{Application, ClientType};
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::core::Timestamp;
use crate::crypto::{random_token, verify_secret};
use crate::oidc::keys::{at_hash, SigningAlg};
use crate::store::{Redemption, StoreError};

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// Why client authentication failed, as the abuse limits count it.
#[derive(Debug)]
pub enum ClientAuthFailure {
    /// No usable credentials, or a client id nobody registered: counted by address.
    Unattributed(OAuthError),
    /// A registered client, with the wrong secret or authentication method:
    /// counted by client and address.
    Refused { client_id: String, error: OAuthError },
    /// ssogate could not tell (its database failed): counted nowhere.
    Store(OAuthError),
}

impl ClientAuthFailure {
    pub fn into_error(self) -> OAuthError {
        match self {
            ClientAuthFailure::Unattributed(e) | ClientAuthFailure::Refused { error: e, .. } | ClientAuthFailure::Store(e) => e,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TokenReply {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
    pub scope: String,
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

    fn put(&self, hash: String, token: CachedToken) {
        self.entries.insert(hash, Arc::new(token));
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

/// Client credentials from `Authorization: Basic` (form-encoded parts, RFC 6749
/// §2.3.1) or from the form; never both.
pub fn client_credentials(form: &HashMap<String, String>, authorization: Option<&str>) -> Result<(String, Option<String>), OAuthError> {
    let basic = authorization.and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")));
    match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => Err(OAuthError::new(ErrorCode::InvalidRequest, "use one client authentication method, not two")),
        (Some(b), None) => {
            let decoded = STANDARD.decode(b.trim()).ok().and_then(|d| String::from_utf8(d).ok());
            let (id, secret) = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials"))?;
            let dec =
                |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
            Ok((dec(id), Some(dec(secret))))
        }
        (None, secret) => {
            let id = form.get("client_id").cloned().ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "no client authentication"))?;
            Ok((id, secret.cloned()))
        }
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
    /// Client authentication (RFC 6749 §2.3.1): confidential clients by secret (a
    /// constant-time hash comparison), public clients by id alone and never with a secret.
    pub async fn authenticate_client(
        &self,
        form: &HashMap<String, String>,
        authorization: Option<&str>,
    ) -> Result<Application, ClientAuthFailure> {
        let (client_id, secret) = client_credentials(form, authorization).map_err(ClientAuthFailure::Unattributed)?;
        let bad_client = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        let found = self.config.application(self.store.as_ref(), &client_id).await.map_err(|e| ClientAuthFailure::Store(e.into()))?;
        let Some((app, secret_hash)) = found else { return Err(ClientAuthFailure::Unattributed(bad_client())) };
        match (app.client_type, secret.as_deref()) {
            (ClientType::Confidential, Some(s)) if verify_secret(s, &secret_hash) => Ok(app),
            (ClientType::Public, None) => Ok(app),
            _ => Err(ClientAuthFailure::Refused { client_id, error: bad_client() }),
        }
    }

    /// `grant_type=authorization_code` at the token endpoint, for an authenticated client.
    pub async fn token(&self, app: &Application, form: HashMap<String, String>) -> Result<TokenReply, OAuthError> {
        let client_id = &app.client_id;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {}
            Some(other) => return Err(OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type `{other}` is not supported"))),
            None => return Err(OAuthError::new(ErrorCode::InvalidRequest, "grant_type is missing")),
        }
        let code = form.get("code").ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "code is missing"))?;
        let t = self.clock.now();
        let access_token = random_token("");
        let token_hash = handle(&access_token);
        let expires_at = t + self.lifetimes.access_token;
        let grant = match self.store.redeem_grant(&handle(code), &token_hash, expires_at, t).await? {
            Redemption::Fresh(g, session_expires_at) => {
                if session_expires_at.is_none_or(|e| e <= t) {
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
        // The checks below run after the code is spent: a code sent with the wrong
        // client, redirect URI or verifier must not stay usable for a second try.
        if grant.application_id != app.id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if grant.code_expires_at < t {
            return Err(invalid_grant("the code has expired"));
        }
        if form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return Err(invalid_grant("redirect_uri does not match the authorization request"));
        }
        match (&grant.code_challenge, form.get("code_verifier")) {
            (Some(ch), Some(v)) if pkce_ok(ch, v) => {}
            (Some(_), _) => return Err(invalid_grant("the PKCE code_verifier does not match")),
            (None, Some(_)) => return Err(invalid_grant("a code_verifier was sent for a request without code_challenge")),
            (None, None) => {}
        }
        // Not cached here: a replay of the code may revoke this token between its
        // redemption and a cache insert, which would then serve it for the recheck
        // window. Its first userinfo reads the store, which knows.
        let Value::Object(claims) = grant.claims.clone() else {
            return Err(OAuthError::new(ErrorCode::ServerError, "stored claims are unreadable"));
        };

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
        if let Some(n) = &grant.nonce {
            id_claims.insert("nonce".into(), n.clone().into());
        }
        let alg = SigningAlg::parse(&app.id_token_signed_response_alg).unwrap_or(SigningAlg::RS256);
        let signer = self.keys.signer(alg).ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "no signing key"))?;
        let id_token = signer.sign_jwt(&id_claims).map_err(|_| OAuthError::new(ErrorCode::ServerError, "signing failed"))?;
        Ok(TokenReply {
            access_token,
            token_type: "Bearer",
            expires_in: self.lifetimes.access_token.as_secs(),
            id_token,
            scope: grant.scope.clone(),
        })
    }

    /// The claims for a bearer access token, from memory when this process has seen it.
    pub async fn userinfo(&self, access_token: &str) -> Result<Arc<[u8]>, UserinfoError> {
        let hash = handle(access_token);
        let t = self.clock.now();
        if let Some(hit) = self.tokens.get(&hash) {
            return if hit.expires_at > t { Ok(hit.body.clone()) } else { Err(UserinfoError::InvalidToken) };
        }
        // Checked against the store once per TOKEN_RECHECK per token: the token,
        // and that its session is live (which also keeps the session from idling out).
        let live = match self.store.issued_token(&hash).await?.filter(|tok| !tok.revoked && tok.expires_at > t) {
            Some(token) => self.use_session(&token.session_hash).await?.map(|_| token),
            None => None,
        };
        let Some(token) = live else {
            self.tokens.remove(std::slice::from_ref(&hash));
            return Err(UserinfoError::InvalidToken);
        };
        let body: Arc<[u8]> = token.claims.to_string().into_bytes().into();
        self.tokens.put(hash, CachedToken { body: body.clone(), expires_at: token.expires_at });
        Ok(body)
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

    #[test]
    fn client_credentials_from_basic_or_form() {
        let form = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let basic = format!("Basic {}", STANDARD.encode("client%3A1:s%2Bcret"));
        assert_eq!(client_credentials(&form(&[]), Some(&basic)).unwrap(), ("client:1".into(), Some("s+cret".into())));
        assert_eq!(client_credentials(&form(&[("client_id", "c"), ("client_secret", "s")]), None).unwrap(), ("c".into(), Some("s".into())));
        assert_eq!(client_credentials(&form(&[("client_id", "c")]), None).unwrap(), ("c".into(), None));
        assert_eq!(client_credentials(&form(&[("client_secret", "s")]), Some(&basic)).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(client_credentials(&form(&[]), None).unwrap_err().code, ErrorCode::InvalidClient);
    }
}
