//! Directories: an organization's SCIM endpoints, each pushed to by one of its
//! identity providers (Okta, Entra ID, …) with its own bearer token.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::resource::Attributes;
use super::{ScimError, ScimFailure, ScimResult};
use crate::core::connection::UserMatch;
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

/// A key a new directory user brings that may already be someone's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldKey {
    /// The `userName` of a user of this directory.
    UserName,
    /// The email, username or IdP subject of a user of the organization.
    Email,
    Username,
    IdpSub,
}

impl HeldKey {
    pub const ALL: [HeldKey; 4] = [HeldKey::UserName, HeldKey::Email, HeldKey::Username, HeldKey::IdpSub];

    /// As errors name it (and the store tags its rows).
    pub fn as_str(self) -> &'static str {
        match self {
            HeldKey::UserName => "userName",
            HeldKey::Email => "email",
            HeldKey::Username => "username",
            HeldKey::IdpSub => "idp_sub",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The key a connection's matching rule links by.
    fn of(user_match: UserMatch) -> Self {
        match user_match {
            UserMatch::Email => HeldKey::Email,
            UserMatch::PreferredUsername => HeldKey::Username,
            UserMatch::Sub => HeldKey::IdpSub,
        }
    }
}

/// A user who already has one of the keys a new directory user brings.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyHolder {
    pub key: HeldKey,
    pub value: String,
    pub user_id: String,
    /// Whether the directory may speak for them: no other connection vouches for
    /// them by its IdP subject.
    pub linkable: bool,
    /// Whether a directory already knows them.
    pub in_directory: bool,
}

/// The existing user a new directory user is, by the connection's matching rule
/// (none: a new user); refuses a `userName` the directory has, one whose keys
/// another user holds, and a user another directory already pushes. The IdP
/// subject counts only when it is the matching rule (only then is the new user
/// given one).
pub fn existing_user(user_match: UserMatch, holders: &[KeyHolder]) -> ScimResult<Option<String>> {
    if let Some(h) = holders.iter().find(|h| h.key == HeldKey::UserName) {
        return Err(ScimError::new(ScimFailure::Conflict, format!("the userName `{}` is taken in this directory", h.value)));
    }
    let rule = HeldKey::of(user_match);
    let relevant = holders.iter().filter(|h| h.key != HeldKey::IdpSub || user_match == UserMatch::Sub);
    let linked = relevant.clone().find(|h| h.key == rule && h.linkable);
    if let Some(h) = linked.filter(|h| h.in_directory) {
        return Err(ScimError::new(
            ScimFailure::Conflict,
            format!("the organization's user with this {} already belongs to a directory", h.key.as_str()),
        ));
    }
    let id = linked.map(|h| h.user_id.clone());
    match relevant.clone().find(|h| Some(&h.user_id) != id.as_ref()) {
        Some(h) => {
            Err(ScimError::new(ScimFailure::Conflict, format!("another user of this organization has {} `{}`", h.key.as_str(), h.value)))
        }
        None => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(key: &str, user_id: &str, linkable: bool, in_directory: bool) -> KeyHolder {
        let key = HeldKey::parse(key).unwrap();
        KeyHolder { key, value: format!("{}-value", key.as_str()), user_id: user_id.into(), linkable, in_directory }
    }

    #[test]
    fn a_new_user_nobody_holds_a_key_of_is_new() {
        assert_eq!(existing_user(UserMatch::Email, &[]).unwrap(), None);
    }

    #[test]
    fn the_matching_rule_links_and_other_keys_must_be_the_same_user() {
        let same = [holder("email", "u1", true, false), holder("username", "u1", true, false)];
        assert_eq!(existing_user(UserMatch::Email, &same).unwrap().as_deref(), Some("u1"));
        let other = [holder("email", "u1", true, false), holder("username", "u2", true, false)];
        let e = existing_user(UserMatch::Email, &other).unwrap_err();
        assert_eq!(e.failure, ScimFailure::Conflict);
        assert!(e.detail.contains("username"), "{}", e.detail);
    }

    #[test]
    fn a_user_another_idp_vouches_for_is_not_linked_and_clashes() {
        let e = existing_user(UserMatch::Email, &[holder("email", "u1", false, false)]).unwrap_err();
        assert!(e.detail.contains("another user"), "{}", e.detail);
    }

    #[test]
    fn a_user_of_another_directory_is_not_taken_over() {
        let e = existing_user(UserMatch::Email, &[holder("email", "u1", true, true)]).unwrap_err();
        assert!(e.detail.contains("already belongs to a directory"), "{}", e.detail);
    }

    #[test]
    fn a_user_name_the_directory_has_is_the_clash_reported() {
        let e = existing_user(UserMatch::Email, &[holder("email", "u1", true, true), holder("userName", "u1", false, true)]).unwrap_err();
        assert!(e.detail.contains("userName `userName-value` is taken"), "{}", e.detail);
    }

    #[test]
    fn the_idp_subject_counts_only_under_subject_matching() {
        let by_sub = [holder("idp_sub", "u1", true, false)];
        assert_eq!(existing_user(UserMatch::Email, &by_sub).unwrap(), None, "not given to the new user: no clash");
        assert_eq!(existing_user(UserMatch::Sub, &by_sub).unwrap().as_deref(), Some("u1"));
        assert!(existing_user(UserMatch::Sub, &[holder("idp_sub", "u1", false, false)]).is_err());
    }
}
