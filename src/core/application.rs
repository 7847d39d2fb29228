//! Applications: the downstream OAuth clients that sign users in through ssogate.

use serde::{Deserialize, Serialize};

use super::error::Validated;
use super::{validate, Timestamp};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Application {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether the app may receive the user's live upstream tokens.
    pub expose_idp_tokens: bool,
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
}

#[derive(Debug)]
pub struct NewApplication {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub expose_idp_tokens: bool,
}

impl CreateApplication {
    pub fn validate(self) -> Validated<NewApplication> {
        Ok(NewApplication {
            name: validate::name("name", &self.name)?,
            redirect_uris: validate::redirect_uris("redirect_uris", &self.redirect_uris, true)?,
            post_logout_redirect_uris: validate::redirect_uris("post_logout_redirect_uris", &self.post_logout_redirect_uris, false)?,
            expose_idp_tokens: self.expose_idp_tokens,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplication {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub expose_idp_tokens: Option<bool>,
}

impl UpdateApplication {
    pub fn apply(self, app: &mut Application) -> Validated<()> {
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
        Ok(())
    }
}
