//! Directory sync: directories and the SCIM resources they push. A SCIM user is
//! the organization's user record itself (one person, one user), with its SCIM
//! resource kept beside it; a SCIM group is a set of those users whose name is an
//! IdP group, mapped to ssogate groups by the directory's connection.
//!
//! Each write is one transaction with its audit rows and with the group sync of
//! every user whose directory groups it changed: nothing is half-written, and two
//! writes to one resource take turns on its row.

use async_trait::async_trait;

use super::{Page, StoreResult};
use crate::core::audit::Actor;
use crate::core::scim::directory::UserDirectory;
use crate::core::scim::filter::Narrowing;
use crate::core::scim::patch::MemberChange;
use crate::core::scim::resource::{Attributes, GroupFields, Member, UserFields};
use crate::core::scim::ScimResult;
use crate::core::Timestamp;

/// A SCIM resource as stored.
#[derive(Clone, Debug)]
pub struct StoredResource {
    /// The user's id (`user_…`) or the directory group's (`dgrp_…`).
    pub id: String,
    pub attrs: Attributes,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A user's directory groups (`{value, display}`), or a group's members as
    /// the directory sent them (when asked for).
    pub related: Option<Vec<serde_json::Value>>,
}

/// Which resources of a directory to list: those an index narrows to (else all),
/// after `after` in id order.
#[derive(Clone, Debug)]
pub struct ResourceQuery<'a> {
    pub narrowing: Option<&'a Narrowing>,
    pub after: &'a str,
    /// Rows to skip after `after` (a page by index, without a filter to evaluate).
    pub offset: u64,
    pub limit: u32,
    /// Groups: load each group's members.
    pub with_related: bool,
}

/// A user resource written, and whether the user can sign in afterwards.
#[derive(Clone, Debug)]
pub struct UserWritten {
    pub resource: StoredResource,
    pub active: bool,
}

/// Changes a stored resource inside the write's transaction: the edit gets the
/// attributes as stored and may refuse (nothing is written then).
pub type ResourceEdit<'a, X> = Box<dyn FnOnce(&mut Attributes) -> ScimResult<X> + Send + 'a>;

/// A condition on the version a write applies to (`If-Match`, RFC 7644 §3.14).
pub type IfMatch = Option<i64>;

#[async_trait]
pub trait DirectorySync: Send + Sync + 'static {
    async fn create_directory(&self, d: &UserDirectory, token_hash: &str, actor: &Actor) -> StoreResult<UserDirectory>;
    async fn get_directory(&self, id: &str) -> StoreResult<Option<UserDirectory>>;
    /// The directory and the hash of its bearer token.
    async fn directory_credentials(&self, id: &str) -> StoreResult<Option<(UserDirectory, String)>>;
    async fn list_directories(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<UserDirectory>>;
    async fn set_directory_token(&self, id: &str, token_hash: &str, actor: &Actor) -> StoreResult<UserDirectory>;
    /// Deletes the directory; its users stay (as users no directory knows).
    async fn delete_directory(&self, id: &str, actor: &Actor) -> StoreResult<()>;
    /// Records that the directory's IdP made a request, and what was wrong with it.
    async fn note_directory_request(&self, id: &str, at: Timestamp, error: Option<&str>) -> StoreResult<()>;
    /// How many users and groups the directory has.
    async fn directory_counts(&self, id: &str) -> StoreResult<(u64, u64)>;

    /// Creates the directory's user, or links the organization's user the
    /// connection's matching rule finds (someone who signed in before the directory
    /// existed) — never a second record of one person.
    async fn scim_create_user(&self, d: &UserDirectory, attrs: Attributes, fields: UserFields, actor: &Actor) -> StoreResult<UserWritten>;
    async fn scim_user(&self, directory_id: &str, id: &str) -> StoreResult<Option<StoredResource>>;
    async fn scim_users(&self, directory_id: &str, q: &ResourceQuery<'_>) -> StoreResult<Vec<StoredResource>>;
    /// A PUT or PATCH: `edit` turns the stored attributes into the new ones, and
    /// gives back what they mean.
    async fn scim_update_user(
        &self,
        d: &UserDirectory,
        id: &str,
        if_match: IfMatch,
        edit: ResourceEdit<'_, UserFields>,
        actor: &Actor,
    ) -> StoreResult<UserWritten>;
    /// The user leaves the directory: deactivated (their record stays, so that
    /// their IdP cannot sign them in again as a new user) and out of its groups.
    async fn scim_delete_user(&self, d: &UserDirectory, id: &str, if_match: IfMatch, actor: &Actor) -> StoreResult<()>;

    async fn scim_create_group(
        &self,
        d: &UserDirectory,
        attrs: Attributes,
        fields: GroupFields,
        members: Vec<Member>,
        actor: &Actor,
    ) -> StoreResult<StoredResource>;
    async fn scim_group(&self, directory_id: &str, id: &str, with_members: bool) -> StoreResult<Option<StoredResource>>;
    async fn scim_groups(&self, directory_id: &str, q: &ResourceQuery<'_>) -> StoreResult<Vec<StoredResource>>;
    /// A PUT or PATCH of a group: `edit` gives back its meaning and the member
    /// changes, applied in order. Members are kept as sent; only those who are users
    /// of the group's own directory count for group sync.
    async fn scim_update_group(
        &self,
        d: &UserDirectory,
        id: &str,
        if_match: IfMatch,
        edit: ResourceEdit<'_, (GroupFields, Vec<MemberChange>)>,
        actor: &Actor,
    ) -> StoreResult<StoredResource>;
    async fn scim_delete_group(&self, d: &UserDirectory, id: &str, if_match: IfMatch, actor: &Actor) -> StoreResult<()>;
}
