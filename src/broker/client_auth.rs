//! Client authentication at the endpoints that take client credentials (token,
//! revocation, introspection, SSO user info, events): a secret (RFC 6749 §2.3.1), a
//! JWT signed with the client's own key (`private_key_jwt`, RFC 7523 §2.2 and OIDC
//! Core §9), or nothing for a public client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;

use super::Broker;
use crate::core::application::{Application, TokenEndpointAuth};
use crate::core::oauth::{ErrorCode, OAuthError};
use crate::crypto::{hash_secret, verify_secret};
use crate::upstream::id_token::{verify_signature, IdTokenError};

/// RFC 7523 §2.2's `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on an assertion's `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;
/// The longest an assertion may be valid for: its `jti` is remembered that long.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Fetched client key sets are kept this long (a key rotated at the client is
/// picked up after it, or sooner for a `kid` not seen yet).
const FETCHED_KEYS_TTL: Duration = Duration::from_secs(300);
/// A key set is fetched again for an unknown `kid` at most this often, so that
/// assertions naming made-up keys cannot make ssogate hammer the client's server.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// The largest JWK set fetched from a client.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// What a client presented to prove who it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Proof {
    None,
    Secret(String),
    Assertion(String),
}

/// Why client authentication failed, as the abuse limits count it.
#[derive(Debug)]
pub enum ClientAuthFailure {
    /// No usable credentials, or a client id nobody registered: counted by address.
    Unattributed(OAuthError),
    /// A registered client, with the wrong secret, assertion or authentication
    /// method: counted by client and address.
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

/// Key sets fetched from clients' `jwks_uri`, by URI, with when they were fetched.
pub struct ClientKeys {
    fetched: moka::future::Cache<String, Arc<Fetched>>,
}

struct Fetched {
    keys: Vec<Jwk>,
    at: std::time::Instant,
}

impl Default for ClientKeys {
    fn default() -> Self {
        ClientKeys { fetched: moka::future::Cache::builder().max_capacity(10_000).time_to_live(FETCHED_KEYS_TTL).build() }
    }
}

/// Why a client assertion did not authenticate its client.
enum AssertionFailure {
    /// The assertion is not good (said to the client, counted against it).
    Refused(String),
    /// ssogate could not tell: its database, or the client's key server, failed
    /// (logged; the client is told to retry, and is not counted).
    Unavailable(String),
}

fn invalid_request(why: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, why)
}

/// The client and its proof, from `Authorization: Basic` (form-encoded parts, RFC
/// 6749 §2.3.1), the form's `client_secret`, or a `client_assertion` (RFC 7523
/// §2.2, whose `sub` names the client when the form does not); one method only.
pub fn client_credentials(form: &HashMap<String, String>, authorization: Option<&str>) -> Result<(String, Proof), OAuthError> {
    let basic = authorization.and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")));
    let assertion = match (form.get("client_assertion_type"), form.get("client_assertion")) {
        (None, None) => None,
        (Some(t), Some(a)) if t == JWT_BEARER => Some(a),
        (Some(_), Some(_)) => return Err(OAuthError::new(ErrorCode::InvalidClient, format!("client_assertion_type must be {JWT_BEARER}"))),
        _ => return Err(invalid_request("client_assertion and client_assertion_type go together")),
    };
    let methods = [basic.is_some(), form.contains_key("client_secret"), assertion.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(invalid_request("use one client authentication method, not two"));
    }
    if let Some(b) = basic {
        let decoded = STANDARD.decode(b.trim()).ok().and_then(|d| String::from_utf8(d).ok());
        let (id, secret) = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials"))?;
        let dec =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
        return Ok((dec(id), Proof::Secret(dec(secret))));
    }
    if let Some(a) = assertion {
        let id = match form.get("client_id") {
            Some(id) => id.clone(),
            None => {
                unverified_subject(a).ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "the client assertion names no client"))?
            }
        };
        return Ok((id, Proof::Assertion(a.clone())));
    }
    let id = form.get("client_id").cloned().ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "no client authentication"))?;
    Ok((id, form.get("client_secret").map_or(Proof::None, |s| Proof::Secret(s.clone()))))
}

/// The `sub` of an assertion, read before it is verified: it only says whose keys
/// to verify it with.
fn unverified_subject(assertion: &str) -> Option<String> {
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(assertion.split('.').nth(1)?).ok()?).ok()?;
    payload.get("sub").and_then(Value::as_str).map(str::to_owned)
}

impl Broker {
    /// Client authentication: each client by the method it registered, and by no
    /// other (a secret is a constant-time hash comparison; public clients present
    /// nothing, and never a secret).
    pub async fn authenticate_client(
        &self,
        form: &HashMap<String, String>,
        authorization: Option<&str>,
    ) -> Result<Application, ClientAuthFailure> {
        let (client_id, proof) = client_credentials(form, authorization).map_err(ClientAuthFailure::Unattributed)?;
        let found = self.config.application(self.store.as_ref(), &client_id).await.map_err(|e| ClientAuthFailure::Store(e.into()))?;
        let bad_client = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        let Some((app, secret_hash)) = found else { return Err(ClientAuthFailure::Unattributed(bad_client())) };
        let refused = |error| ClientAuthFailure::Refused { client_id: client_id.clone(), error };
        match (app.token_endpoint_auth_method, proof) {
            (method, Proof::Secret(s)) if method.uses_secret() && verify_secret(&s, &secret_hash) => Ok(app),
            (TokenEndpointAuth::PrivateKeyJwt, Proof::Assertion(a)) => match self.check_assertion(&app, &a).await {
                Ok(()) => Ok(app),
                Err(AssertionFailure::Refused(why)) => {
                    tracing::info!(client_id = %app.client_id, why, "client assertion refused");
                    Err(refused(OAuthError::new(ErrorCode::InvalidClient, format!("client authentication failed: {why}"))))
                }
                Err(AssertionFailure::Unavailable(why)) => {
                    tracing::warn!(client_id = %app.client_id, why, "a client assertion could not be checked");
                    let error =
                        OAuthError::new(ErrorCode::TemporarilyUnavailable, "the client's credentials cannot be checked now; retry shortly");
                    Err(ClientAuthFailure::Store(error))
                }
            },
            (TokenEndpointAuth::None, Proof::None) => Ok(app),
            _ => Err(refused(bad_client())),
        }
    }

    /// RFC 7523 §3: signed by one of the client's keys with an allowed algorithm
    /// (never HMAC, never `none`), `iss` and `sub` the client, `aud` ssogate (its
    /// issuer, or its token endpoint as OIDC Core §9 has it; one audience only),
    /// unexpired and not valid for long, and its `jti` used once.
    async fn check_assertion(&self, app: &Application, assertion: &str) -> Result<(), AssertionFailure> {
        let refused = |why: &str| AssertionFailure::Refused(why.to_owned());
        let keys = self.client_keys_of(app, false).await?;
        let claims = match verify_signature(assertion, &keys, None) {
            Ok(c) => c,
            // A key the client rotated in since its set was fetched.
            Err(IdTokenError::UnknownKey(_)) if app.jwks_uri.is_some() => {
                let keys = self.client_keys_of(app, true).await?;
                verify_signature(assertion, &keys, None).map_err(|e| AssertionFailure::Refused(e.to_string()))?
            }
            Err(e) => return Err(AssertionFailure::Refused(e.to_string())),
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("iss") != Some(app.client_id.as_str()) || text("sub") != Some(app.client_id.as_str()) {
            return Err(refused("`iss` and `sub` must both be the client id"));
        }
        let ours = |a: &str| a == self.issuer || a == format!("{}/oauth2/token", self.issuer);
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => ours(a),
            Some(Value::Array(a)) => matches!(a.as_slice(), [Value::String(one)] if ours(one)),
            _ => false,
        };
        if !aud_ok {
            return Err(refused("`aud` must be ssogate's issuer (or its token endpoint), alone"));
        }
        let now = self.clock.now().unix_timestamp();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| refused("`exp` is missing"))?;
        if exp.saturating_add(LEEWAY_SECS) < now {
            return Err(refused("the assertion has expired"));
        }
        if exp > now.saturating_add(MAX_ASSERTION_LIFETIME_SECS) {
            return Err(AssertionFailure::Refused(format!("the assertion is valid for more than {MAX_ASSERTION_LIFETIME_SECS} s")));
        }
        if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS)) {
            return Err(refused("the assertion is not valid yet"));
        }
        let jti = text("jti").ok_or_else(|| refused("`jti` is missing"))?;
        // Remembered past the last moment any replica would still accept it.
        let remembered = (exp - now + 2 * LEEWAY_SECS).max(0) as u64;
        let until = self.clock.now() + Duration::from_secs(remembered);
        let first_use = self.store.use_once(&hash_secret(&format!("client_assertion:{}:{jti}", app.client_id)), until).await;
        match first_use {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused("the assertion was used before (its `jti` is single-use)")),
            Err(e) => Err(AssertionFailure::Unavailable(format!("recording the assertion's jti failed: {e}"))),
        }
    }

    /// The client's public keys: those it registered, or those at its `jwks_uri`
    /// (fetched under the SSRF guard, kept a few minutes; `fresh` fetches again if
    /// the kept set is older than [`REFETCH_AFTER`]).
    async fn client_keys_of(&self, app: &Application, fresh: bool) -> Result<Vec<Jwk>, AssertionFailure> {
        if let Some(set) = &app.jwks {
            let set: JwkSet = serde_json::from_value(set.clone())
                .map_err(|e| AssertionFailure::Refused(format!("the registered keys are unreadable: {e}")))?;
            return Ok(set.keys);
        }
        let uri = app.jwks_uri.as_deref().ok_or_else(|| AssertionFailure::Refused("the client has no keys".into()))?;
        let cache = &self.client_keys.fetched;
        if fresh && cache.get(uri).await.is_some_and(|kept| kept.at.elapsed() >= REFETCH_AFTER) {
            cache.invalidate(uri).await;
        }
        let client = self.app_client.clone();
        let fetched = cache
            .try_get_with(uri.to_owned(), async move {
                let keys = fetch_jwks(&client, uri).await?;
                Ok::<_, String>(Arc::new(Fetched { keys, at: std::time::Instant::now() }))
            })
            .await
            .map_err(|e| AssertionFailure::Unavailable(e.to_string()))?;
        Ok(fetched.keys.clone())
    }
}

async fn fetch_jwks(client: &crate::outbound::AppClient, uri: &str) -> Result<Vec<Jwk>, String> {
    if let Some(why) = client.refusal(uri) {
        return Err(format!("the client's jwks_uri is outside the network policy: {why}"));
    }
    let mut response = client.http.get(uri).send().await.map_err(|e| format!("fetching the client's keys failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the client's jwks_uri answered {}", response.status()));
    }
    // Read in chunks and cut off at the cap, whether or not a length was announced.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the client's keys failed: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("the client's key set is over {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("the client's keys are not a JWK set: {e}"))?;
    Ok(set.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn credentials_from_basic_form_or_assertion() {
        let basic = format!("Basic {}", STANDARD.encode("client%3A1:s%2Bcret"));
        assert_eq!(client_credentials(&form(&[]), Some(&basic)).unwrap(), ("client:1".into(), Proof::Secret("s+cret".into())));
        assert_eq!(
            client_credentials(&form(&[("client_id", "c"), ("client_secret", "s")]), None).unwrap(),
            ("c".into(), Proof::Secret("s".into()))
        );
        assert_eq!(client_credentials(&form(&[("client_id", "c")]), None).unwrap(), ("c".into(), Proof::None));
        assert_eq!(client_credentials(&form(&[("client_secret", "s")]), Some(&basic)).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(client_credentials(&form(&[]), None).unwrap_err().code, ErrorCode::InvalidClient);

        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"client_9","iss":"client_9"}"#);
        let assertion = format!("e30.{payload}.sig");
        let with = |extra: &[(&str, &str)]| {
            let mut f = form(&[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
            f.extend(form(extra));
            client_credentials(&f, None)
        };
        assert_eq!(with(&[]).unwrap(), ("client_9".into(), Proof::Assertion(assertion.clone())), "the assertion names its client");
        assert_eq!(with(&[("client_id", "client_9")]).unwrap().0, "client_9");
        assert_eq!(with(&[("client_secret", "s")]).unwrap_err().code, ErrorCode::InvalidRequest, "two methods at once");
        assert_eq!(client_credentials(&form(&[]), Some(&basic)).map(|c| c.0).unwrap(), "client:1");
        let wrong_type = form(&[("client_assertion_type", "urn:other"), ("client_assertion", &assertion)]);
        assert_eq!(client_credentials(&wrong_type, None).unwrap_err().code, ErrorCode::InvalidClient);
        let lone = form(&[("client_assertion", &assertion)]);
        assert_eq!(client_credentials(&lone, None).unwrap_err().code, ErrorCode::InvalidRequest);
    }
}
