//! Directories: an organization's SCIM endpoints, each pushed to by one of its
//! identity providers (Okta, Entra ID, …) with its own bearer token.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::resource::Attributes;
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

/// What events tell of a directory user (WorkOS's directory user, in short).
pub fn user_event_data(d: &UserDirectory, user_id: &str, attrs: &Attributes, active: bool) -> Value {
    let name = attrs.get("name");
    json!({
        "id": user_id,
        "directory_id": d.id,
        "organization_id": d.organization_id,
        "idp_id": attrs.get("externalId"),
        "user_name": attrs.get("userName"),
        "emails": attrs.get("emails").cloned().unwrap_or_else(|| json!([])),
        "first_name": name.and_then(|n| n.get("givenName")),
        "last_name": name.and_then(|n| n.get("familyName")),
        "state": if active { "active" } else { "inactive" },
        "raw_attributes": attrs,
    })
}

/// What events tell of a directory group.
pub fn group_event_data(d: &UserDirectory, group_id: &str, attrs: &Attributes) -> Value {
    json!({
        "id": group_id,
        "directory_id": d.id,
        "organization_id": d.organization_id,
        "idp_id": attrs.get("externalId"),
        "name": attrs.get("displayName"),
    })
}

/// What a membership event tells: whose, and of which group.
pub fn membership_event_data(d: &UserDirectory, user_id: &str, group_id: &str, group_name: &str) -> Value {
    json!({
        "directory_id": d.id,
        "organization_id": d.organization_id,
        "user": {"id": user_id},
        "group": {"id": group_id, "name": group_name},
    })
}
