//! Users: people of an organization, provisioned by login or created by an admin.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Validated, ValidationError};
use super::group_sync::IdpGroup;
use super::roles::Role;
use super::{patch, validate, Timestamp};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct User {
    pub id: String,
    pub organization_id: String,
    /// The connection the user last signed in through, if any.
    pub connection_id: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub picture: Option<String>,
    /// The user's `sub` at their identity provider.
    pub idp_sub: Option<String>,
    /// Groups as the IdP last reported them (before mapping).
    pub idp_groups: Vec<IdpGroup>,
    /// Every other claim the IdP sent, kept verbatim.
    pub attributes: Value,
    /// False once the user's directory deactivated (or deleted) them: they cannot
    /// sign in, and hold no seat.
    pub active: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// A user as the admin API shows it: with group names and the derived role.
#[derive(Clone, Debug, Serialize)]
pub struct UserView {
    #[serde(flatten)]
    pub user: User,
    pub groups: Vec<String>,
    /// Those of `groups` group sync put the user in (from the IdP's groups); the rest
    /// were set by an admin.
    pub synced_groups: Vec<String>,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: Option<String>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub idp_sub: Option<String>,
    /// Names of the groups to place the user in by hand.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UserProfile {
    pub email: Option<String>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub idp_sub: Option<String>,
}

fn optional(field: &str, v: Option<&str>, f: fn(&str, &str) -> Validated<String>) -> Validated<Option<String>> {
    v.map(|v| f(field, v)).transpose()
}

fn username(field: &str, v: &str) -> Validated<String> {
    validate::opaque(field, v, 256)
}

fn group_names(values: &[String]) -> Validated<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, g) in values.iter().enumerate() {
        let name = validate::group_name(&format!("groups[{i}]"), g)?;
        if out.contains(&name) {
            return Err(ValidationError::new(format!("groups[{i}]"), format!("`{name}` is listed twice")));
        }
        out.push(name);
    }
    Ok(out)
}

impl CreateUser {
    pub fn validate(self) -> Validated<(UserProfile, Vec<String>)> {
        let profile = UserProfile {
            email: optional("email", self.email.as_deref(), validate::email)?,
            username: optional("username", self.username.as_deref(), username)?,
            first_name: optional("first_name", self.first_name.as_deref(), validate::name)?,
            last_name: optional("last_name", self.last_name.as_deref(), validate::name)?,
            idp_sub: optional("idp_sub", self.idp_sub.as_deref(), username)?,
        };
        if profile.email.is_none() && profile.username.is_none() && profile.idp_sub.is_none() {
            return Err(ValidationError::new(
                "email",
                "give at least one of email, username or idp_sub so the user can be matched at login",
            ));
        }
        Ok((profile, group_names(&self.groups)?))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "patch::nullable")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    pub last_name: Option<Option<String>>,
    /// Replaces the user's group memberships.
    #[serde(default, deserialize_with = "patch::present")]
    pub groups: Option<Vec<String>>,
    /// Deactivates (ending every session) or reactivates the user, whatever their
    /// directory last said; the directory's next change of `active` wins again.
    #[serde(default, deserialize_with = "patch::present")]
    pub active: Option<bool>,
}

impl UpdateUser {
    /// Applies profile changes; returns the new group names when they are to be replaced.
    pub fn apply(self, u: &mut User) -> Validated<Option<Vec<String>>> {
        if let Some(v) = self.email {
            u.email = optional("email", v.as_deref(), validate::email)?;
        }
        if let Some(v) = self.username {
            u.username = optional("username", v.as_deref(), username)?;
        }
        if let Some(v) = self.first_name {
            u.first_name = optional("first_name", v.as_deref(), validate::name)?;
        }
        if let Some(v) = self.last_name {
            u.last_name = optional("last_name", v.as_deref(), validate::name)?;
        }
        if let Some(active) = self.active {
            u.active = active;
        }
        if u.email.is_none() && u.username.is_none() && u.idp_sub.is_none() {
            return Err(ValidationError::new("email", "a user needs at least one of email, username or idp_sub"));
        }
        self.groups.as_deref().map(group_names).transpose()
    }
}
