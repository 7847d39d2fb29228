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
use crate::upstream::id_token::verify_signature;

/// RFC 7523 §2.2's `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on an assertion's `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;
/// The longest an assertion may be valid for: its `jti` is remembered that long.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Fetched client key sets are kept this long (a key rotated at the client is
/// picked up after it, or at once for a `kid` not seen yet).
const FETCHED_KEYS_TTL: Duration = Duration::from_secs(300);
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

/// Key sets fetched from clients' `jwks_uri`, by URI.
pub struct ClientKeys {
    fetched: moka::future::Cache<String, Arc<Vec<Jwk>>>,
}

impl Default for ClientKeys {
    fn default() -> Self {
        ClientKeys { fetched: moka::future::Cache::builder().max_capacity(10_000).time_to_live(FETCHED_KEYS_TTL).build() }
    }
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
                Err(why) => {
                    tracing::info!(client_id = %app.client_id, why, "client assertion refused");
                    Err(refused(OAuthError::new(ErrorCode::InvalidClient, format!("client authentication failed: {why}"))))
                }
            },
            (TokenEndpointAuth::None, Proof::None) => Ok(app),
            _ => Err(refused(bad_client())),
        }
    }

    /// RFC 7523 §3: signed by one of the client's keys with an allowed algorithm
    /// (never HMAC, never `none`), `iss` and `sub` the client, `aud` ssogate (its
    /// issuer, or the endpoint's URL), unexpired and not valid for long, and its
    /// `jti` used once.
    async fn check_assertion(&self, app: &Application, assertion: &str) -> Result<(), String> {
        let keys = self.client_keys_of(app, false).await?;
        let claims = match verify_signature(assertion, &keys, None) {
            Ok(c) => c,
            // A key the client rotated in since its set was fetched.
            Err(_) if app.jwks_uri.is_some() => {
                let keys = self.client_keys_of(app, true).await?;
                verify_signature(assertion, &keys, None).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("iss") != Some(app.client_id.as_str()) || text("sub") != Some(app.client_id.as_str()) {
            return Err("`iss` and `sub` must both be the client id".into());
        }
        let ours = |a: &str| {
            a == self.issuer || ["/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"].iter().any(|p| a == format!("{}{p}", self.issuer))
        };
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => ours(a),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(ours),
            _ => false,
        };
        if !aud_ok {
            return Err("`aud` must be ssogate's issuer or token endpoint".into());
        }
        let now = self.clock.now().unix_timestamp();
        let exp = claims.get("exp").and_then(Value::as_i64).ok_or("`exp` is missing")?;
        if exp + LEEWAY_SECS < now {
            return Err("the assertion has expired".into());
        }
        if exp > now + MAX_ASSERTION_LIFETIME_SECS {
            return Err(format!("the assertion is valid for more than {MAX_ASSERTION_LIFETIME_SECS} s"));
        }
        if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err("the assertion is not valid yet".into());
        }
        let jti = text("jti").ok_or("`jti` is missing")?;
        let until = self.clock.now() + Duration::from_secs((exp - now + LEEWAY_SECS).max(0) as u64);
        let first_use = self.store.use_once(&hash_secret(&format!("client_assertion:{}:{jti}", app.client_id)), until).await;
        match first_use {
            Ok(true) => Ok(()),
            Ok(false) => Err("the assertion was used before (its `jti` is single-use)".into()),
            Err(e) => Err(format!("ssogate could not record the assertion: {e}")),
        }
    }

    /// The client's public keys: those it registered, or those at its `jwks_uri`
    /// (fetched under the SSRF guard, kept a few minutes; `fresh` fetches again).
    async fn client_keys_of(&self, app: &Application, fresh: bool) -> Result<Arc<Vec<Jwk>>, String> {
        if let Some(set) = &app.jwks {
            let set: JwkSet = serde_json::from_value(set.clone()).map_err(|e| format!("the registered keys are unreadable: {e}"))?;
            return Ok(Arc::new(set.keys));
        }
        let uri = app.jwks_uri.as_deref().ok_or("the client has no keys")?;
        if fresh {
            self.client_keys.fetched.invalidate(uri).await;
        }
        let client = self.app_client.clone();
        self.client_keys
            .fetched
            .try_get_with(uri.to_owned(), async move { fetch_jwks(&client, uri).await.map(Arc::new) })
            .await
            .map_err(|e: Arc<String>| e.to_string())
    }
}

async fn fetch_jwks(client: &crate::outbound::AppClient, uri: &str) -> Result<Vec<Jwk>, String> {
    if let Some(why) = client.refusal(uri) {
        return Err(format!("the client's jwks_uri is outside the network policy: {why}"));
    }
    let response = client.http.get(uri).send().await.map_err(|e| format!("fetching the client's keys failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the client's jwks_uri answered {}", response.status()));
    }
    if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        return Err("the client's key set is too large".into());
    }
    let body = response.bytes().await.map_err(|e| format!("reading the client's keys failed: {e}"))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err("the client's key set is too large".into());
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
