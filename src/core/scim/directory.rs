//! Directories: an organization's SCIM endpoints, each pushed to by one of its
//! identity providers (Okta, Entra ID, …) with its own bearer token.

use serde::{Deserialize, Serialize};

use crate::core::error::Validated;
use crate::core::{validate, Timestamp};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserDirectory {
    pub id: String,
    pub organization_id: String,
    /// The connection of the same IdP: its matching rule links the directory's users
    /// to the people who sign in, and its group mapping takes the directory's groups.
    pub connection_id: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub token_rotated_at: Timestamp,
    /// The last request the IdP made, and the last one ssogate refused (what and when).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_request_at: Option<Timestamp>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDirectory {
    pub name: String,
    pub connection_id: String,
}

impl CreateDirectory {
    pub fn validate(self) -> Validated<CreateDirectory> {
        Ok(CreateDirectory {
            name: validate::name("name", &self.name)?,
            connection_id: validate::opaque("connection_id", &self.connection_id, 64)?,
        })
    }
}
