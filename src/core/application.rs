//! Applications: the downstream OAuth clients that sign users in through ssogate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Validated, ValidationError};
use super::network::NetworkPolicy;
use super::{patch, validate, Timestamp};

/// Confidential clients authenticate with their secret at the token endpoint;
/// public ones (SPAs, native apps) cannot keep one and must use PKCE instead. A
/// resource server (an API) signs nobody in: it holds a secret only to introspect
/// the access tokens applications send it (RFC 7662 §2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    #[default]
    Confidential,
    Public,
    ResourceServer,
}

impl ClientType {
    /// Whether the client authenticates with a secret.
    pub fn has_secret(self) -> bool {
        self != ClientType::Public
    }
}

/// How a client proves who it is at the token, revocation and introspection
/// endpoints (RFC 7591 §2 names). A secret may come by Basic or in the form either
/// way (RFC 6749 §2.3.1), as libraries differ in what they send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with one of the client's own keys (RFC 7523 §2.2, OIDC Core §9):
    /// no secret is issued or kept.
    PrivateKeyJwt,
    /// Public clients, which hold no credential.
    None,
}

impl TokenEndpointAuth {
    /// A client's method when it names none: by its type.
    pub fn default_for(client_type: ClientType) -> Self {
        match client_type {
            ClientType::Public => TokenEndpointAuth::None,
            ClientType::Confidential | ClientType::ResourceServer => TokenEndpointAuth::ClientSecretBasic,
        }
    }

    pub fn uses_secret(self) -> bool {
        matches!(self, TokenEndpointAuth::ClientSecretBasic | TokenEndpointAuth::ClientSecretPost)
    }
}

/// What an access token is: a random handle only ssogate can read (the default), or
/// a signed JWT (RFC 9068) an API can verify offline with ssogate's JWKS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenFormat {
    #[default]
    Opaque,
    Jwt,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Application {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub client_type: ClientType,
    /// `RS256` (the default every client supports) or `ES256`.
    pub id_token_signed_response_alg: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether the app may receive the user's live upstream tokens.
    pub expose_idp_tokens: bool,
    /// Where ssogate POSTs a logout token when a session the app holds tokens of ends.
    pub backchannel_logout_uri: Option<String>,
    /// The page ssogate frames when such a session ends in the browser (OIDC
    /// Front-Channel Logout 1.0 §2), told `iss` and `sid` if it asks to be.
    pub frontchannel_logout_uri: Option<String>,
    pub frontchannel_logout_session_required: bool,
    pub access_token_format: AccessTokenFormat,
    /// The `aud` of its access tokens: the API they are for (default: its client id;
    /// required for JWT access tokens). For a resource server: the audience it is,
    /// whose tokens it may introspect.
    pub access_token_audience: Option<String>,
    pub token_endpoint_auth_method: TokenEndpointAuth,
    /// For `private_key_jwt`: its public keys, given (a JWK set) or fetched from its
    /// `jwks_uri`.
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub expose_idp_tokens: bool,
    #[serde(default)]
    pub client_type: ClientType,
    pub id_token_signed_response_alg: Option<String>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub frontchannel_logout_session_required: bool,
    #[serde(default)]
    pub access_token_format: AccessTokenFormat,
    pub access_token_audience: Option<String>,
    pub token_endpoint_auth_method: Option<TokenEndpointAuth>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
}

#[derive(Debug)]
pub struct NewApplication {
    pub name: String,
    pub client_type: ClientType,
    pub id_token_signed_response_alg: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub expose_idp_tokens: bool,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub frontchannel_logout_session_required: bool,
    pub access_token_format: AccessTokenFormat,
    pub access_token_audience: Option<String>,
    pub token_endpoint_auth_method: TokenEndpointAuth,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
}

impl CreateApplication {
    /// `policy`: where back-channel logout tokens may be sent.
    pub fn validate(self, policy: &NetworkPolicy) -> Validated<NewApplication> {
        let new = NewApplication {
            name: validate::name("name", &self.name)?,
            client_type: self.client_type,
            id_token_signed_response_alg: signing_alg(self.id_token_signed_response_alg.as_deref().unwrap_or("RS256"))?,
            redirect_uris: validate::redirect_uris("redirect_uris", &self.redirect_uris, self.client_type != ClientType::ResourceServer)?,
            post_logout_redirect_uris: validate::redirect_uris("post_logout_redirect_uris", &self.post_logout_redirect_uris, false)?,
            expose_idp_tokens: self.expose_idp_tokens,
            backchannel_logout_uri: self.backchannel_logout_uri.as_deref().map(|u| backchannel_logout_uri(policy, u)).transpose()?,
            frontchannel_logout_uri: self.frontchannel_logout_uri.as_deref().map(frontchannel_logout_uri).transpose()?,
            frontchannel_logout_session_required: self.frontchannel_logout_session_required,
            access_token_format: self.access_token_format,
            access_token_audience: self.access_token_audience.as_deref().map(audience).transpose()?,
            token_endpoint_auth_method: auth_method(self.client_type, self.token_endpoint_auth_method)?,
            jwks: self.jwks.map(jwks).transpose()?,
            jwks_uri: self.jwks_uri.as_deref().map(|u| jwks_uri(policy, u)).transpose()?,
        };
        client_keys(new.token_endpoint_auth_method, new.jwks.is_some(), new.jwks_uri.is_some())?;
        if new.client_type == ClientType::ResourceServer {
            let logout_uris = [new.backchannel_logout_uri.is_some(), new.frontchannel_logout_uri.is_some()];
            signs_nobody_in(&new.redirect_uris, &new.post_logout_redirect_uris, logout_uris, new.expose_idp_tokens)?;
        }
        audience_named(new.client_type, new.access_token_format, new.access_token_audience.as_deref())?;
        if let Some(uri) = &new.frontchannel_logout_uri {
            same_origin_as_a_redirect_uri(uri, &new.redirect_uris)?;
        }
        Ok(new)
    }
}

/// A resource server has nothing to sign users in with: a setting that only means
/// something for a client that does is refused, so nobody believes it is in force.
fn signs_nobody_in(redirect_uris: &[String], post_logout: &[String], [back, front]: [bool; 2], expose_idp_tokens: bool) -> Validated<()> {
    let refused = [
        ("redirect_uris", !redirect_uris.is_empty()),
        ("post_logout_redirect_uris", !post_logout.is_empty()),
        ("backchannel_logout_uri", back),
        ("frontchannel_logout_uri", front),
        ("expose_idp_tokens", expose_idp_tokens),
    ];
    match refused.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(ValidationError::new(field, "a resource server signs nobody in: leave this unset")),
        None => Ok(()),
    }
}

/// A resource server is the API of one audience: it introspects only the tokens
/// for it (RFC 9700 §4.10). JWT access tokens name their API, so that an ID token
/// (whose `aud` is the client id) is never taken for one, nor one for an ID token.
fn audience_named(client_type: ClientType, format: AccessTokenFormat, audience: Option<&str>) -> Validated<()> {
    let why = match (client_type, format) {
        (ClientType::ResourceServer, _) => "a resource server introspects the tokens for its audience: name it (its URL, say)",
        (_, AccessTokenFormat::Jwt) => "JWT access tokens name the API they are for: set it (the API's URL, say)",
        _ => return Ok(()),
    };
    match audience {
        Some(_) => Ok(()),
        None => Err(ValidationError::new("access_token_audience", why)),
    }
}

/// Public clients authenticate with nothing, every other client with something.
fn auth_method(client_type: ClientType, asked: Option<TokenEndpointAuth>) -> Validated<TokenEndpointAuth> {
    let method = asked.unwrap_or(TokenEndpointAuth::default_for(client_type));
    match (client_type == ClientType::Public, method == TokenEndpointAuth::None) {
        (true, false) => Err(ValidationError::new("token_endpoint_auth_method", "a public client holds no credential: `none`")),
        (false, true) => Err(ValidationError::new("token_endpoint_auth_method", "only public clients authenticate with `none`")),
        _ => Ok(method),
    }
}

/// A `private_key_jwt` client has its keys in one place, and no other client has keys.
fn client_keys(method: TokenEndpointAuth, jwks: bool, jwks_uri: bool) -> Validated<()> {
    match (method == TokenEndpointAuth::PrivateKeyJwt, jwks, jwks_uri) {
        (true, true, false) | (true, false, true) | (false, false, false) => Ok(()),
        (true, false, false) => Err(ValidationError::new("jwks", "private_key_jwt needs the client's public keys: `jwks` or `jwks_uri`")),
        (true, true, true) => Err(ValidationError::new("jwks_uri", "give `jwks` or `jwks_uri`, not both")),
        (false, ..) => {
            let field = if jwks { "jwks" } else { "jwks_uri" };
            Err(ValidationError::new(field, "keys are for private_key_jwt clients only"))
        }
    }
}

/// A JWK set of public signing keys (RFC 7517 §5): a private key pasted by mistake
/// is refused, not stored.
fn jwks(v: Value) -> Validated<Value> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(v.clone()).map_err(|e| ValidationError::new("jwks", format!("is not a JWK set: {e}")))?;
    if set.keys.is_empty() || set.keys.len() > 20 {
        return Err(ValidationError::new("jwks", "must hold between 1 and 20 keys"));
    }
    let private = v["keys"].as_array().into_iter().flatten().any(|k| ["d", "p", "q", "k"].iter().any(|m| k.get(m).is_some()));
    if private {
        return Err(ValidationError::new("jwks", "holds a private key: register the public keys only"));
    }
    Ok(v)
}

/// Where the client publishes its keys: fetched under the applications' SSRF guard.
fn jwks_uri(policy: &NetworkPolicy, v: &str) -> Validated<String> {
    let url = url::Url::parse(v).map_err(|e| ValidationError::new("jwks_uri", e.to_string()))?;
    policy.check_url("jwks_uri", &url)?;
    Ok(url.into())
}

/// The `aud` of access tokens: an API's identifier, usually its URL.
fn audience(v: &str) -> Validated<String> {
    let v = validate::opaque("access_token_audience", v, 512)?;
    // A client id as `aud` would make an access token pass for that client's ID token.
    if v.starts_with("client_") {
        return Err(ValidationError::new("access_token_audience", "must name an API, not a client id"));
    }
    Ok(v)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplication {
    #[serde(default, deserialize_with = "patch::present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch::present")]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "patch::present")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "patch::present")]
    pub expose_idp_tokens: Option<bool>,
    #[serde(default, deserialize_with = "patch::present")]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub backchannel_logout_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub frontchannel_logout_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::present")]
    pub frontchannel_logout_session_required: Option<bool>,
    #[serde(default, deserialize_with = "patch::present")]
    pub access_token_format: Option<AccessTokenFormat>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub access_token_audience: Option<Option<String>>,
    /// New keys for a `private_key_jwt` client (its method itself is fixed).
    #[serde(default, deserialize_with = "patch::nullable")]
    pub jwks: Option<Option<Value>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub jwks_uri: Option<Option<String>>,
}

fn backchannel_logout_uri(policy: &NetworkPolicy, v: &str) -> Validated<String> {
    let uri = validate::backchannel_logout_uri("backchannel_logout_uri", v)?;
    let url = url::Url::parse(&uri).map_err(|e| ValidationError::new("backchannel_logout_uri", e.to_string()))?;
    policy.check_url("backchannel_logout_uri", &url)?;
    Ok(uri)
}

/// A page of the application the user's browser loads in a frame: ssogate never
/// calls it itself, so only its form is checked (https, or http on loopback).
fn frontchannel_logout_uri(v: &str) -> Validated<String> {
    validate::backchannel_logout_uri("frontchannel_logout_uri", v)
}

/// OIDC Front-Channel Logout 1.0 §2: the page is on the application's own origin
/// (that of one of its redirect URIs), so `iss` and `sid` go nowhere else.
fn same_origin_as_a_redirect_uri(uri: &str, redirect_uris: &[String]) -> Validated<()> {
    let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin().ascii_serialization());
    let own = origin(uri);
    match own.is_some() && redirect_uris.iter().any(|r| origin(r) == own) {
        true => Ok(()),
        false => Err(ValidationError::new("frontchannel_logout_uri", "must be on the scheme, host and port of one of the redirect_uris")),
    }
}

/// ID tokens are signed with RS256 unless the application asks for ES256.
fn signing_alg(v: &str) -> Validated<String> {
    match v {
        "RS256" | "ES256" => Ok(v.to_owned()),
        _ => Err(ValidationError::new("id_token_signed_response_alg", "must be RS256 or ES256")),
    }
}

impl UpdateApplication {
    pub fn apply(self, app: &mut Application, policy: &NetworkPolicy) -> Validated<()> {
        if let Some(v) = &self.name {
            app.name = validate::name("name", v)?;
        }
        if let Some(v) = &self.redirect_uris {
            app.redirect_uris = validate::redirect_uris("redirect_uris", v, app.client_type != ClientType::ResourceServer)?;
        }
        if let Some(v) = &self.post_logout_redirect_uris {
            app.post_logout_redirect_uris = validate::redirect_uris("post_logout_redirect_uris", v, false)?;
        }
        if let Some(v) = self.expose_idp_tokens {
            app.expose_idp_tokens = v;
        }
        if let Some(v) = &self.id_token_signed_response_alg {
            app.id_token_signed_response_alg = signing_alg(v)?;
        }
        if let Some(v) = &self.backchannel_logout_uri {
            app.backchannel_logout_uri = v.as_deref().map(|u| backchannel_logout_uri(policy, u)).transpose()?;
        }
        if let Some(v) = &self.frontchannel_logout_uri {
            app.frontchannel_logout_uri = v.as_deref().map(frontchannel_logout_uri).transpose()?;
        }
        if let Some(v) = self.frontchannel_logout_session_required {
            app.frontchannel_logout_session_required = v;
        }
        if let Some(v) = self.access_token_format {
            app.access_token_format = v;
        }
        if let Some(v) = &self.access_token_audience {
            app.access_token_audience = v.as_deref().map(audience).transpose()?;
        }
        if app.client_type == ClientType::ResourceServer {
            let logout_uris = [app.backchannel_logout_uri.is_some(), app.frontchannel_logout_uri.is_some()];
            signs_nobody_in(&app.redirect_uris, &app.post_logout_redirect_uris, logout_uris, app.expose_idp_tokens)?;
        }
        if let Some(v) = self.jwks {
            app.jwks = v.map(jwks).transpose()?;
        }
        if let Some(v) = &self.jwks_uri {
            app.jwks_uri = v.as_deref().map(|u| jwks_uri(policy, u)).transpose()?;
        }
        audience_named(app.client_type, app.access_token_format, app.access_token_audience.as_deref())?;
        client_keys(app.token_endpoint_auth_method, app.jwks.is_some(), app.jwks_uri.is_some())?;
        if let Some(uri) = &app.frontchannel_logout_uri {
            same_origin_as_a_redirect_uri(uri, &app.redirect_uris)?;
        }
        Ok(())
    }
}
