//! Applications: the downstream OAuth clients that sign users in through ssogate.

use serde::{Deserialize, Serialize};

use super::error::{Validated, ValidationError};
use super::network::NetworkPolicy;
use super::{patch, validate, Timestamp};

/// Confidential clients authenticate with their secret at the token endpoint;
/// public ones (SPAs, native apps) cannot keep one and must use PKCE instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    #[default]
    Confidential,
    Public,
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    pub name: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub expose_idp_tokens: bool,
    #[serde(default)]
    pub client_type: ClientType,
    pub id_token_signed_response_alg: Option<String>,
    pub backchannel_logout_uri: Option<String>,
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
}

impl CreateApplication {
    /// `policy`: where back-channel logout tokens may be sent.
    pub fn validate(self, policy: &NetworkPolicy) -> Validated<NewApplication> {
        Ok(NewApplication {
            name: validate::name("name", &self.name)?,
            client_type: self.client_type,
            id_token_signed_response_alg: signing_alg(self.id_token_signed_response_alg.as_deref().unwrap_or("RS256"))?,
            redirect_uris: validate::redirect_uris("redirect_uris", &self.redirect_uris, true)?,
            post_logout_redirect_uris: validate::redirect_uris("post_logout_redirect_uris", &self.post_logout_redirect_uris, false)?,
            expose_idp_tokens: self.expose_idp_tokens,
            backchannel_logout_uri: self.backchannel_logout_uri.as_deref().map(|u| backchannel_logout_uri(policy, u)).transpose()?,
        })
    }
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
}

fn backchannel_logout_uri(policy: &NetworkPolicy, v: &str) -> Validated<String> {
    let uri = validate::backchannel_logout_uri("backchannel_logout_uri", v)?;
    let url = url::Url::parse(&uri).map_err(|e| ValidationError::new("backchannel_logout_uri", e.to_string()))?;
    policy.check_url("backchannel_logout_uri", &url)?;
    Ok(uri)
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
            app.redirect_uris = validate::redirect_uris("redirect_uris", v, true)?;
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
        Ok(())
    }
}
