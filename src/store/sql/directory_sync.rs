//! [`DirectorySync`] over SQL.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::commit_batch::{bound, Param};
use super::directory::{check_user_unique, claim_seat};
use super::webhooks::emit;
use super::{cursor, from_json, from_ms, ms, param_list, record, to_json, Dialect, SqlStore, Tx};
use crate::core::audit::{self, Actor};
use crate::core::connection::UserMatch;
use crate::core::event::EventType;
use crate::core::ids::{new_id, IdKind};
use crate::core::scim::directory::{
    existing_user, group_event_data, membership_event_data, user_event_data, HeldKey, KeyHolder, UserDirectory,
};
use crate::core::scim::filter::Narrowing;
use crate::core::scim::patch::MemberChange;
use crate::core::scim::resource::{Attributes, GroupFields, Member, UserFields};
use crate::core::scim::schema::ResourceType;
use crate::core::scim::{ScimError, ScimFailure};
use crate::core::user::UserProfile;
use crate::core::ValidationError;
use crate::store::directory_sync::{DirectorySync, IfMatch, ResourceEdit, ResourceQuery, StoredResource, UserWritten};
use crate::store::{Page, StoreError, StoreResult};

/// Statements binding many ids take them in chunks of this many.
const CHUNK: usize = 500;

fn directory_row(r: &AnyRow) -> StoreResult<UserDirectory> {
    Ok(UserDirectory {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        connection_id: r.try_get("connection_id")?,
        name: r.try_get("name")?,
        token_rotated_at: from_ms(r.try_get("token_rotated_at")?)?,
        last_request_at: r.try_get::<Option<i64>, _>("last_request_at")?.map(from_ms).transpose()?,
        last_error: r.try_get("last_error")?,
        last_error_at: r.try_get::<Option<i64>, _>("last_error_at")?.map(from_ms).transpose()?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

fn resource_row(r: &AnyRow, id_column: &str, related: Option<Vec<Value>>) -> StoreResult<StoredResource> {
    Ok(StoredResource {
        id: r.try_get(id_column)?,
        attrs: from_json(&r.try_get::<String, _>("resource")?)?,
        version: r.try_get("version")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
        related,
    })
}

fn scim(failure: ScimFailure, detail: impl Into<String>) -> StoreError {
    StoreError::Scim(ScimError::new(failure, detail))
}

fn check_version(if_match: IfMatch, version: i64) -> StoreResult<()> {
    match if_match {
        Some(v) if v != version => Err(scim(ScimFailure::VersionMismatch, format!("the resource is at version {version}, not {v}"))),
        _ => Ok(()),
    }
}

impl Dialect {
    /// A directory user's groups as JSON `[[id, display_name], …]`, found from their
    /// memberships (CROSS JOIN keeps SQLite from walking every group instead).
    fn user_directory_groups(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(SELECT json_group_array(json_array(g.id, g.display_name)) FROM directory_group_members m \
                 CROSS JOIN directory_groups g WHERE m.member_id = du.user_id AND g.id = m.group_id AND g.directory_id = du.directory_id)"
            }
            Dialect::Postgres => {
                "(SELECT COALESCE(json_agg(json_build_array(g.id, g.display_name))::text, '[]') FROM directory_group_members m \
                 CROSS JOIN directory_groups g WHERE m.member_id = du.user_id AND g.id = m.group_id AND g.directory_id = du.directory_id)"
            }
        }
    }
}

/// `WHERE` terms (after the directory's) and the value they bind, for a narrowing.
fn narrowed(n: Option<&Narrowing>, id: &str, name_key: &str, member: Option<&str>) -> (String, Option<String>) {
    match n {
        Some(Narrowing::Id(v)) => (format!(" AND {id} = $4"), Some(v.clone())),
        Some(Narrowing::Name(v)) => (format!(" AND {name_key} = $4"), Some(v.clone())),
        Some(Narrowing::ExternalId(v)) => (" AND external_id = $4".into(), Some(v.clone())),
        Some(Narrowing::Member(v)) => match member {
            Some(clause) => (format!(" AND {clause}"), Some(v.clone())),
            // Users have no members: nothing matches.
            None => (" AND 1 = 0 AND $4 IS NULL".into(), Some(v.clone())),
        },
        None => (" AND $4 IS NULL".into(), None),
    }
}

impl SqlStore {
    async fn user_resource(&self, conn: &mut AnyConnection, directory_id: &str, id: &str) -> StoreResult<Option<StoredResource>> {
        let sql = format!(
            "SELECT du.*, {} AS related FROM directory_users du WHERE du.directory_id = $1 AND du.user_id = $2",
            self.dialect.user_directory_groups()
        );
        let row = sqlx::query(&sql).bind(directory_id).bind(id).fetch_optional(conn).await?;
        row.as_ref().map(user_resource_row).transpose()
    }

    async fn group_resource(
        &self,
        conn: &mut AnyConnection,
        directory_id: &str,
        id: &str,
        with_members: bool,
    ) -> StoreResult<Option<StoredResource>> {
        let row = sqlx::query("SELECT * FROM directory_groups WHERE directory_id = $1 AND id = $2")
            .bind(directory_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let members = if with_members { Some(members_of(conn, id).await?) } else { None };
        Ok(Some(resource_row(&row, "id", members)?))
    }

    /// The resource a write changes, its row held for the transaction, if it is the
    /// directory's and at the version `If-Match` names.
    async fn held(&self, tx: &mut Tx, rt: ResourceType, d: &UserDirectory, id: &str, if_match: IfMatch) -> StoreResult<StoredResource> {
        let found = match rt {
            ResourceType::User => {
                self.hold_row(tx, "users", id).await?;
                self.user_resource(tx, &d.id, id).await?
            }
            ResourceType::Group => {
                self.hold_row(tx, "directory_groups", id).await?;
                self.group_resource(tx, &d.id, id, false).await?
            }
        };
        let before = found.ok_or_else(|| StoreError::Scim(ScimError::not_found(&rt.name().to_lowercase())))?;
        check_version(if_match, before.version)?;
        Ok(before)
    }

    /// Brings the memberships of each user to what their directory groups now say
    /// (through the directory's connection), inside the write's transaction.
    async fn regroup(&self, tx: &mut Tx, d: &UserDirectory, users: &BTreeSet<String>, actor: &Actor) -> StoreResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        self.sync_stored_groups_in(tx, &d.connection_id, &d.organization_id, users, actor).await
    }

    /// Applies member changes in order; returns, in order, each membership of one
    /// of the directory's users that was added (true) or removed (false).
    async fn change_members(
        &self,
        tx: &mut Tx,
        d: &UserDirectory,
        group_id: &str,
        changes: &[MemberChange],
    ) -> StoreResult<Vec<(String, bool)>> {
        let mut changed: Vec<(String, bool)> = vec![];
        let t = ms(self.clock.now());
        for change in changes {
            let (add, remove): (Vec<&Member>, Vec<String>) = match change {
                MemberChange::Add(members) => (members.iter().collect(), vec![]),
                MemberChange::Remove(ids) => (vec![], ids.clone()),
                MemberChange::RemoveAll => (vec![], member_ids(tx, group_id).await?.into_iter().collect()),
                MemberChange::Replace(members) => {
                    let current = member_ids(tx, group_id).await?;
                    let wanted: BTreeSet<&str> = members.iter().map(|m| m.value.as_str()).collect();
                    let gone = current.iter().filter(|id| !wanted.contains(id.as_str())).cloned().collect();
                    (members.iter().filter(|m| !current.contains(&m.value)).collect(), gone)
                }
            };
            // What was actually inserted or deleted: adding a member twice changes nothing.
            for chunk in add.chunks(CHUNK) {
                let values: Vec<String> = (0..chunk.len()).map(|i| format!("($1, ${}, ${}, $2)", 2 * i + 3, 2 * i + 4)).collect();
                let sql = format!(
                    "INSERT INTO directory_group_members (group_id, member_id, member, created_at) VALUES {} \
                     ON CONFLICT (group_id, member_id) DO NOTHING RETURNING member_id",
                    values.join(", ")
                );
                let mut q = sqlx::query_scalar::<_, String>(&sql).bind(group_id).bind(t);
                for m in chunk {
                    q = q.bind(&m.value).bind(to_json(&m.entry));
                }
                changed.extend(q.fetch_all(&mut **tx).await?.into_iter().map(|id| (id, true)));
            }
            for chunk in remove.chunks(CHUNK) {
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                let sql = format!(
                    "DELETE FROM directory_group_members WHERE group_id = $1 AND member_id IN ({}) RETURNING member_id",
                    list.join(", ")
                );
                let mut q = sqlx::query_scalar::<_, String>(&sql).bind(group_id);
                for id in chunk {
                    q = q.bind(id);
                }
                changed.extend(q.fetch_all(&mut **tx).await?.into_iter().map(|id| (id, false)));
            }
        }
        let ids: Vec<String> = changed.iter().map(|(id, _)| id.clone()).collect();
        let users: BTreeSet<String> = users_of_directory(tx, &d.id, &ids).await?.into_iter().collect();
        changed.retain(|(id, _)| users.contains(id));
        Ok(changed)
    }

    /// The group's members who are users of its directory.
    async fn directory_members(&self, tx: &mut Tx, d: &UserDirectory, group_id: &str) -> StoreResult<BTreeSet<String>> {
        let ids: Vec<String> = member_ids(tx, group_id).await?.into_iter().collect();
        Ok(users_of_directory(tx, &d.id, &ids).await?.into_iter().collect())
    }

    /// Syncs the groups of the users whose memberships changed, and tells of each change.
    async fn after_member_changes(
        &self,
        tx: &mut Tx,
        d: &UserDirectory,
        group: (&str, &str),
        changed: &[(String, bool)],
        actor: &Actor,
    ) -> StoreResult<()> {
        let users: BTreeSet<String> = changed.iter().map(|(id, _)| id.clone()).collect();
        self.regroup(tx, d, &users, actor).await?;
        let t = self.clock.now();
        for (user_id, added) in changed {
            let kind = if *added { EventType::MemberAdded } else { EventType::MemberRemoved };
            emit(tx, t, Some(&d.organization_id), kind, membership_event_data(d, user_id, group.0, group.1));
        }
        Ok(())
    }

    /// Writes the directory's view of a user onto their record, refusing what would
    /// clash with another user of the organization, and claiming a seat for a user
    /// who becomes active.
    async fn write_user_fields(&self, tx: &mut Tx, d: &UserDirectory, user_id: &str, was_active: bool, f: &UserFields) -> StoreResult<()> {
        self.check_user_fields(tx, d, user_id, was_active, f).await?;
        sqlx::query(
            "UPDATE users SET email = COALESCE($2, email), username = $3, first_name = COALESCE($4, first_name), \
             last_name = COALESCE($5, last_name), active = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(user_id)
        .bind(&f.email)
        .bind(&f.user_name)
        .bind(&f.first_name)
        .bind(&f.last_name)
        .bind(i64::from(f.active))
        .bind(ms(self.clock.now()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// What writing the directory's view of a user needs first: no clash with
    /// another user of the organization, and a seat for a user who becomes active.
    async fn check_user_fields(&self, tx: &mut Tx, d: &UserDirectory, user_id: &str, was_active: bool, f: &UserFields) -> StoreResult<()> {
        let profile =
            UserProfile { email: f.email.clone(), username: Some(f.user_name.clone()), first_name: None, last_name: None, idp_sub: None };
        check_user_unique(tx, &d.organization_id, user_id, &profile).await.map_err(as_uniqueness)?;
        if f.active && !was_active {
            self.claim_seat_for(tx, d).await?;
        }
        Ok(())
    }

    async fn claim_seat_for(&self, tx: &mut Tx, d: &UserDirectory) -> StoreResult<()> {
        match claim_seat(tx, self.dialect, &d.organization_id).await? {
            Ok(()) => Ok(()),
            Err(max) => Err(scim(ScimFailure::Forbidden, format!("the organization has used all of its {max} seats"))),
        }
    }

    /// The connection's matching rule, and the users who hold a key of the new
    /// directory user (see [`existing_user`]), in one statement.
    async fn key_holders(&self, tx: &mut Tx, d: &UserDirectory, f: &UserFields) -> StoreResult<(UserMatch, Vec<KeyHolder>)> {
        // Each organization key is tagged with its column's name, which is its name.
        let holder = |key: HeldKey, param: u8| {
            let column = key.as_str();
            format!(
                "SELECT '{column}' AS k, u.{column} AS v, u.id, \
                 CASE WHEN u.idp_sub IS NULL OR u.connection_id IS NULL OR u.connection_id = $1 THEN 1 ELSE 0 END AS linkable, \
                 CASE WHEN du.user_id IS NULL THEN 0 ELSE 1 END AS known \
                 FROM users u LEFT JOIN directory_users du ON du.user_id = u.id WHERE u.organization_id = $2 AND u.{column} = ${param}"
            )
        };
        let sql = format!(
            "SELECT c.user_match, h.k, h.v, h.id, h.linkable, h.known FROM connections c LEFT JOIN ({} UNION ALL {} UNION ALL {} \
             UNION ALL SELECT '{}', user_name, user_id, 0, 1 FROM directory_users WHERE directory_id = $6 AND user_name_key = $7) h \
             ON 1 = 1 WHERE c.id = $1",
            holder(HeldKey::Email, 3),
            holder(HeldKey::Username, 4),
            holder(HeldKey::IdpSub, 5),
            HeldKey::UserName.as_str()
        );
        let rows = sqlx::query(&sql)
            .bind(&d.connection_id)
            .bind(&d.organization_id)
            .bind(&f.email)
            .bind(&f.user_name)
            .bind(&f.external_id)
            .bind(&d.id)
            .bind(f.user_name.to_lowercase())
            .fetch_all(&mut **tx)
            .await?;
        let first = rows.first().ok_or(StoreError::NotFound("connection"))?;
        let user_match: UserMatch = from_json(&first.try_get::<String, _>("user_match")?)?;
        let mut holders = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(user_id) = r.try_get::<Option<String>, _>("id")? else { continue };
            let key: String = r.try_get("k")?;
            holders.push(KeyHolder {
                key: HeldKey::parse(&key).ok_or_else(|| StoreError::Corrupt(format!("unknown key `{key}`")))?,
                value: r.try_get("v")?,
                user_id,
                linkable: r.try_get::<i64, _>("linkable")? == 1,
                in_directory: r.try_get::<i64, _>("known")? == 1,
            });
        }
        Ok((user_match, holders))
    }
}

/// Where a resource type is kept: users beside their user record, groups alone.
struct ResourceTable {
    table: &'static str,
    id: &'static str,
    /// `userName` or `displayName`, and its lowercased key (unique per directory).
    name: &'static str,
    key: &'static str,
    /// The SCIM attribute the name is.
    attribute: &'static str,
}

const USERS: ResourceTable =
    ResourceTable { table: "directory_users", id: "user_id", name: "user_name", key: "user_name_key", attribute: "userName" };
const GROUPS: ResourceTable =
    ResourceTable { table: "directory_groups", id: "id", name: "display_name", key: "display_name_key", attribute: "displayName" };

/// What a write of a resource keeps.
struct ResourceRow<'a> {
    id: &'a str,
    name: &'a str,
    external_id: Option<&'a str>,
    attrs: &'a Attributes,
}

impl ResourceTable {
    /// The statement that stores a new resource.
    fn insert_statement(&self, directory_id: &str, r: &ResourceRow<'_>, at: crate::core::Timestamp) -> (String, Vec<Param>) {
        let ResourceTable { table, id, name, key, .. } = self;
        let sql = format!(
            "INSERT INTO {table} ({id}, directory_id, {name}, {key}, external_id, resource, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)"
        );
        let params = vec![
            r.id.into(),
            directory_id.into(),
            r.name.into(),
            r.name.to_lowercase().into(),
            r.external_id.into(),
            to_json(r.attrs).into(),
            ms(at).into(),
        ];
        (sql, params)
    }

    async fn insert(&self, tx: &mut Tx, directory_id: &str, r: &ResourceRow<'_>, at: crate::core::Timestamp) -> StoreResult<()> {
        let (sql, params) = self.insert_statement(directory_id, r, at);
        bound(sqlx::query(&sql), &params).execute(&mut **tx).await.map_err(|e| self.name_taken(e, r.name))?;
        Ok(())
    }

    /// A name another resource of the directory has, in any case (the unique key is
    /// the lowercased name: SCIM compares `userName` and `displayName` case-insensitively).
    fn name_taken(&self, e: sqlx::Error, name: &str) -> StoreError {
        let on_key = e.as_database_error().is_some_and(|d| {
            d.is_unique_violation() && format!("{} {}", d.constraint().unwrap_or_default(), d.message()).contains(self.key)
        });
        if on_key {
            return scim(ScimFailure::Conflict, format!("the {} `{name}` is taken in this directory", self.attribute));
        }
        as_uniqueness(e.into())
    }

    /// The new version of the resource (the version goes up by one).
    async fn update(&self, tx: &mut Tx, r: &ResourceRow<'_>, at: crate::core::Timestamp) -> StoreResult<()> {
        let ResourceTable { table, id, name, key, .. } = self;
        let sql = format!(
            "UPDATE {table} SET {name} = $2, {key} = $3, external_id = $4, resource = $5, version = version + 1, updated_at = $6 WHERE {id} = $1"
        );
        let q = sqlx::query(&sql).bind(r.id).bind(r.name).bind(r.name.to_lowercase()).bind(r.external_id);
        q.bind(to_json(r.attrs)).bind(ms(at)).execute(&mut **tx).await.map_err(|e| self.name_taken(e, r.name))?;
        Ok(())
    }
}

/// A clash with another user of the organization is SCIM's `uniqueness`.
fn as_uniqueness(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict { message, .. } => scim(ScimFailure::Conflict, message),
        other => other,
    }
}

fn user_resource_row(r: &AnyRow) -> StoreResult<StoredResource> {
    let related: Option<String> = r.try_get("related")?;
    let groups: Vec<(String, String)> = from_json(related.as_deref().unwrap_or("[]"))?;
    let groups = groups.into_iter().map(|(id, display)| json!({"value": id, "display": display, "type": "direct"})).collect();
    resource_row(r, "user_id", Some(groups))
}

/// Of `ids`, those of users of the directory: only they count for its groups'
/// sync, never a user of another directory or organization.
async fn users_of_directory(tx: &mut Tx, directory_id: &str, ids: &[String]) -> StoreResult<Vec<String>> {
    let mut found = Vec::with_capacity(ids.len());
    let unique: Vec<&String> = ids.iter().collect::<BTreeSet<_>>().into_iter().collect();
    for chunk in unique.chunks(CHUNK) {
        let sql = format!("SELECT user_id FROM directory_users WHERE directory_id = $1 AND user_id IN ({})", param_list(2, chunk.len()));
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(directory_id);
        for id in chunk {
            q = q.bind(*id);
        }
        found.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(found)
}

/// A group's members as sent, in id order.
async fn members_of(conn: &mut AnyConnection, group_id: &str) -> StoreResult<Vec<Value>> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT member FROM directory_group_members WHERE group_id = $1 ORDER BY member_id")
        .bind(group_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|m| from_json(m)).collect()
}

async fn member_ids(conn: &mut AnyConnection, group_id: &str) -> StoreResult<BTreeSet<String>> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT member_id FROM directory_group_members WHERE group_id = $1").bind(group_id).fetch_all(conn).await?;
    Ok(rows.into_iter().collect())
}

#[async_trait]
impl DirectorySync for SqlStore {
    async fn create_directory(&self, d: &UserDirectory, token_hash: &str, actor: &Actor) -> StoreResult<UserDirectory> {
        let mut tx = self.write_tx().await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT organization_id FROM connections WHERE id = $1")
            .bind(&d.connection_id)
            .fetch_optional(&mut *tx)
            .await?;
        if owner.as_deref() != Some(d.organization_id.as_str()) {
            return Err(ValidationError::new("connection_id", "the organization has no such connection").into());
        }
        sqlx::query(
            "INSERT INTO directories (id, organization_id, connection_id, name, token_hash, token_rotated_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
        )
        .bind(&d.id)
        .bind(&d.organization_id)
        .bind(&d.connection_id)
        .bind(&d.name)
        .bind(token_hash)
        .bind(ms(d.created_at))
        .execute(&mut *tx)
        .await?;
        let changes = json!({"name": d.name, "connection_id": d.connection_id});
        record(&mut tx, self.clock.now(), Some(&d.organization_id), actor, "directory.created", ("directory", &d.id), changes);
        tx.commit().await?;
        Ok(d.clone())
    }

    async fn get_directory(&self, id: &str) -> StoreResult<Option<UserDirectory>> {
        let row = sqlx::query("SELECT * FROM directories WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(directory_row).transpose()
    }

    async fn directory_credentials(&self, id: &str) -> StoreResult<Option<(UserDirectory, String)>> {
        let row = sqlx::query("SELECT * FROM directories WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok((directory_row(&r)?, r.try_get("token_hash")?))).transpose()
    }

    async fn list_directories(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<UserDirectory>> {
        let rows = sqlx::query("SELECT * FROM directories WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(organization_id)
            .bind(cursor(page, false))
            .bind(page.limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(directory_row).collect()
    }

    async fn set_directory_token(&self, id: &str, token_hash: &str, actor: &Actor) -> StoreResult<UserDirectory> {
        let mut tx = self.write_tx().await?;
        let t = ms(self.clock.now());
        let row = sqlx::query("UPDATE directories SET token_hash = $2, token_rotated_at = $3, updated_at = $3 WHERE id = $1 RETURNING *")
            .bind(id)
            .bind(token_hash)
            .bind(t)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("directory"))?;
        let d = directory_row(&row)?;
        record(&mut tx, self.clock.now(), Some(&d.organization_id), actor, "directory.token_rotated", ("directory", id), json!({}));
        tx.commit().await?;
        Ok(d)
    }

    async fn delete_directory(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT * FROM directories WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let d = directory_row(&row.ok_or(StoreError::NotFound("directory"))?)?;
        // Its users keep no membership it gave: with its groups emptied, each is synced
        // (still linked) before the directory goes.
        sqlx::query("DELETE FROM directory_group_members WHERE group_id IN (SELECT id FROM directory_groups WHERE directory_id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let users: BTreeSet<String> = sqlx::query_scalar("SELECT user_id FROM directory_users WHERE directory_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        self.regroup(&mut tx, &d, &users, actor).await?;
        sqlx::query("DELETE FROM directories WHERE id = $1").bind(id).execute(&mut *tx).await?;
        record(
            &mut tx,
            self.clock.now(),
            Some(&d.organization_id),
            actor,
            "directory.deleted",
            ("directory", id),
            json!({"users": users.len()}),
        );
        tx.commit().await?;
        Ok(())
    }

    async fn note_directory_request(&self, id: &str, at: crate::core::Timestamp, error: Option<&str>) -> StoreResult<()> {
        // The broker calls this about once a minute per directory, and this writes at
        // most that often besides errors.
        let mut writing = self.writing().await?;
        sqlx::query(
            "UPDATE directories SET last_request_at = $2, \
             last_error = CASE WHEN $3 IS NULL THEN last_error ELSE $3 END, \
             last_error_at = CASE WHEN $3 IS NULL THEN last_error_at ELSE $2 END \
             WHERE id = $1 AND ($3 IS NOT NULL OR last_request_at IS NULL OR last_request_at < $2 - 60000)",
        )
        .bind(id)
        .bind(ms(at))
        .bind(error)
        .execute(&mut *writing)
        .await?;
        Ok(())
    }

    async fn directory_counts(&self, id: &str) -> StoreResult<(u64, u64)> {
        let users: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE directory_id = $1").bind(id).fetch_one(&self.pool).await?;
        let groups: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM directory_groups WHERE directory_id = $1").bind(id).fetch_one(&self.pool).await?;
        Ok((users as u64, groups as u64))
    }

    async fn scim_create_user(&self, d: &UserDirectory, attrs: Attributes, f: UserFields, actor: &Actor) -> StoreResult<UserWritten> {
        let mut tx = self.write_tx().await?;
        let t = self.clock.now();
        let (user_match, holders) = self.key_holders(&mut tx, d, &f).await?;
        let found = existing_user(user_match, &holders)?;
        let user_id = found.clone().unwrap_or_else(|| new_id(IdKind::User));
        let row = ResourceRow { id: &user_id, name: &f.user_name, external_id: f.external_id.as_deref(), attrs: &attrs };
        let mut previously = json!(null);
        match &found {
            Some(id) => {
                self.hold_row(&mut tx, "users", id).await?;
                let (email, username, was_active): (Option<String>, Option<String>, i64) =
                    sqlx::query_as("SELECT email, username, active FROM users WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                previously = json!({"email": email, "username": username});
                self.write_user_fields(&mut tx, d, id, was_active != 0, &f).await?;
                USERS.insert(&mut tx, &d.id, &row, t).await?;
            }
            None => {
                if f.active {
                    self.claim_seat_for(&mut tx, d).await?;
                }
                // Nothing reads the new user's rows again before the commit.
                // With matching by subject, the IdP's id for the user is their subject.
                let idp_sub = if user_match == UserMatch::Sub { f.external_id.as_deref() } else { None };
                tx.append(
                    "INSERT INTO users (id, organization_id, connection_id, email, email_verified, username, first_name, last_name, \
                     idp_sub, idp_groups, attributes, active, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, '[]', '{}', $9, $10, $10)",
                    vec![
                        user_id.as_str().into(),
                        d.organization_id.as_str().into(),
                        d.connection_id.as_str().into(),
                        f.email.as_deref().into(),
                        f.user_name.as_str().into(),
                        f.first_name.as_deref().into(),
                        f.last_name.as_deref().into(),
                        idp_sub.into(),
                        i64::from(f.active).into(),
                        ms(t).into(),
                    ],
                );
                let (sql, params) = USERS.insert_statement(&d.id, &row, t);
                tx.append(sql, params);
            }
        }
        let action = if found.is_some() { "directory.user_linked" } else { "directory.user_created" };
        let changes = json!({"directory_id": d.id, "userName": f.user_name, "active": f.active, "previously": previously});
        record(&mut tx, t, Some(&d.organization_id), actor, action, ("user", &user_id), changes);
        emit(&mut tx, t, Some(&d.organization_id), EventType::UserCreated, user_event_data(d, &user_id, &attrs, f.active));
        // From now on the directory sets the memberships of a user it linked (where
        // the organization says so): none until it pushes a group.
        let resource = if found.is_some() {
            self.regroup(&mut tx, d, &BTreeSet::from([user_id.clone()]), actor).await?;
            self.user_resource(&mut tx, &d.id, &user_id).await?.ok_or(StoreError::NotFound("user"))?
        } else {
            // A new user is in no group yet: what was written is what is returned.
            StoredResource { id: user_id.clone(), attrs, version: 1, created_at: t, updated_at: t, related: Some(vec![]) }
        };
        tx.commit().await.map_err(|e| USERS.name_taken(e, &f.user_name))?;
        Ok(UserWritten { resource, active: f.active })
    }

    async fn scim_user(&self, directory_id: &str, id: &str) -> StoreResult<Option<StoredResource>> {
        let mut conn = self.conn().await?;
        self.user_resource(&mut conn, directory_id, id).await
    }

    async fn scim_users(&self, directory_id: &str, q: &ResourceQuery<'_>) -> StoreResult<Vec<StoredResource>> {
        let (clause, value) = narrowed(q.narrowing, "du.user_id", "du.user_name_key", None);
        let sql = format!(
            "SELECT du.*, {} AS related FROM directory_users du WHERE du.directory_id = $1 AND du.user_id > $2{clause} ORDER BY du.user_id LIMIT $3 OFFSET $5",
            self.dialect.user_directory_groups()
        );
        let rows = sqlx::query(&sql)
            .bind(directory_id)
            .bind(q.after)
            .bind(q.limit as i64)
            .bind(value)
            .bind(q.offset as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_resource_row).collect()
    }

    async fn scim_update_user(
        &self,
        d: &UserDirectory,
        id: &str,
        if_match: IfMatch,
        edit: ResourceEdit<'_, UserFields>,
        actor: &Actor,
    ) -> StoreResult<UserWritten> {
        let mut tx = self.write_tx().await?;
        let before = self.held(&mut tx, ResourceType::User, d, id, if_match).await?;
        let mut attrs = before.attrs.clone();
        let f = edit(&mut attrs)?;
        let t = self.clock.now();
        // The name first: a clash is the client's 409 whatever else the write needs.
        USERS.update(&mut tx, &ResourceRow { id, name: &f.user_name, external_id: f.external_id.as_deref(), attrs: &attrs }, t).await?;
        let was_active: i64 = sqlx::query_scalar("SELECT active FROM users WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        self.write_user_fields(&mut tx, d, id, was_active != 0, &f).await?;
        let changes = audit::diff(&serde_json::Value::Object(before.attrs), &serde_json::Value::Object(attrs.clone()));
        let action = match (was_active != 0, f.active) {
            (true, false) => "directory.user_deactivated",
            (false, true) => "directory.user_reactivated",
            _ => "directory.user_updated",
        };
        record(&mut tx, t, Some(&d.organization_id), actor, action, ("user", id), changes);
        let kind = if f.active { EventType::UserUpdated } else { EventType::UserDeactivated };
        emit(&mut tx, t, Some(&d.organization_id), kind, user_event_data(d, id, &attrs, f.active));
        let resource = self.user_resource(&mut tx, &d.id, id).await?.ok_or(StoreError::NotFound("user"))?;
        tx.commit().await?;
        Ok(UserWritten { resource, active: f.active })
    }

    async fn scim_delete_user(&self, d: &UserDirectory, id: &str, if_match: IfMatch, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let before = self.held(&mut tx, ResourceType::User, d, id, if_match).await?;
        sqlx::query("DELETE FROM directory_group_members WHERE member_id = $1 AND group_id IN (SELECT id FROM directory_groups WHERE directory_id = $2)")
            .bind(id)
            .bind(&d.id)
            .execute(&mut *tx)
            .await?;
        // Still linked, with no directory group left: the memberships the directory
        // gave are taken back before the user leaves it.
        self.regroup(&mut tx, d, &BTreeSet::from([id.to_owned()]), actor).await?;
        sqlx::query("DELETE FROM directory_users WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        let t = self.clock.now();
        sqlx::query("UPDATE users SET active = 0, updated_at = $2 WHERE id = $1").bind(id).bind(ms(t)).execute(&mut *tx).await?;
        record(&mut tx, t, Some(&d.organization_id), actor, "directory.user_deleted", ("user", id), json!({"directory_id": d.id}));
        emit(&mut tx, t, Some(&d.organization_id), EventType::UserDeleted, user_event_data(d, id, &before.attrs, false));
        tx.commit().await?;
        Ok(())
    }

    async fn scim_create_group(
        &self,
        d: &UserDirectory,
        attrs: Attributes,
        f: GroupFields,
        members: Vec<Member>,
        actor: &Actor,
    ) -> StoreResult<StoredResource> {
        let mut tx = self.write_tx().await?;
        let id = new_id(IdKind::DirectoryGroup);
        let t = self.clock.now();
        GROUPS
            .insert(
                &mut tx,
                &d.id,
                &ResourceRow { id: &id, name: &f.display_name, external_id: f.external_id.as_deref(), attrs: &attrs },
                t,
            )
            .await?;
        emit(&mut tx, t, Some(&d.organization_id), EventType::GroupCreated, group_event_data(d, &id, &attrs));
        let changed = self.change_members(&mut tx, d, &id, &[MemberChange::Add(members)]).await?;
        self.after_member_changes(&mut tx, d, (&id, &f.display_name), &changed, actor).await?;
        let changes = json!({"directory_id": d.id, "displayName": f.display_name, "members_added": changed.len()});
        record(&mut tx, t, Some(&d.organization_id), actor, "directory.group_created", ("directory_group", &id), changes);
        let group = self.group_resource(&mut tx, &d.id, &id, true).await?.ok_or(StoreError::NotFound("group"))?;
        tx.commit().await?;
        Ok(group)
    }

    async fn scim_group(&self, directory_id: &str, id: &str, with_members: bool) -> StoreResult<Option<StoredResource>> {
        let mut conn = self.conn().await?;
        self.group_resource(&mut conn, directory_id, id, with_members).await
    }

    async fn scim_groups(&self, directory_id: &str, q: &ResourceQuery<'_>) -> StoreResult<Vec<StoredResource>> {
        let member = "id IN (SELECT group_id FROM directory_group_members WHERE member_id = $4)";
        let (clause, value) = narrowed(q.narrowing, "id", "display_name_key", Some(member));
        let sql = format!("SELECT * FROM directory_groups WHERE directory_id = $1 AND id > $2{clause} ORDER BY id LIMIT $3 OFFSET $5");
        let mut conn = self.conn().await?;
        let rows = sqlx::query(&sql)
            .bind(directory_id)
            .bind(q.after)
            .bind(q.limit as i64)
            .bind(value)
            .bind(q.offset as i64)
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let members = if q.with_related { Some(members_of(&mut conn, &r.try_get::<String, _>("id")?).await?) } else { None };
            out.push(resource_row(r, "id", members)?);
        }
        Ok(out)
    }

    async fn scim_update_group(
        &self,
        d: &UserDirectory,
        id: &str,
        if_match: IfMatch,
        edit: ResourceEdit<'_, (GroupFields, Vec<MemberChange>)>,
        actor: &Actor,
    ) -> StoreResult<StoredResource> {
        let mut tx = self.write_tx().await?;
        let before = self.held(&mut tx, ResourceType::Group, d, id, if_match).await?;
        let mut attrs = before.attrs.clone();
        let (f, member_changes) = edit(&mut attrs)?;
        let t = self.clock.now();
        GROUPS.update(&mut tx, &ResourceRow { id, name: &f.display_name, external_id: f.external_id.as_deref(), attrs: &attrs }, t).await?;
        if before.attrs != attrs {
            emit(&mut tx, t, Some(&d.organization_id), EventType::GroupUpdated, group_event_data(d, id, &attrs));
        }
        let changed = self.change_members(&mut tx, d, id, &member_changes).await?;
        self.after_member_changes(&mut tx, d, (id, &f.display_name), &changed, actor).await?;
        let mut changes = audit::diff(&serde_json::Value::Object(before.attrs.clone()), &serde_json::Value::Object(attrs.clone()));
        if !changed.is_empty() {
            changes["members_changed"] = json!(changed.len());
        }
        record(&mut tx, t, Some(&d.organization_id), actor, "directory.group_updated", ("directory_group", id), changes);
        // A new name (or IdP id) maps every member anew, at once: a role it gave
        // must not outlive it. This is the one group write whose cost is the group's.
        let renamed =
            before.attrs.get("displayName") != attrs.get("displayName") || before.attrs.get("externalId") != attrs.get("externalId");
        if renamed {
            let members = self.directory_members(&mut tx, d, id).await?;
            self.regroup(&mut tx, d, &members, actor).await?;
        }
        let group = self.group_resource(&mut tx, &d.id, id, false).await?.ok_or(StoreError::NotFound("group"))?;
        tx.commit().await?;
        Ok(group)
    }

    async fn scim_delete_group(&self, d: &UserDirectory, id: &str, if_match: IfMatch, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let before = self.held(&mut tx, ResourceType::Group, d, id, if_match).await?;
        let members = self.directory_members(&mut tx, d, id).await?;
        sqlx::query("DELETE FROM directory_groups WHERE id = $1").bind(id).execute(&mut *tx).await?;
        let changes = json!({"directory_id": d.id, "displayName": before.attrs.get("displayName")});
        record(&mut tx, self.clock.now(), Some(&d.organization_id), actor, "directory.group_deleted", ("directory_group", id), changes);
        emit(&mut tx, self.clock.now(), Some(&d.organization_id), EventType::GroupDeleted, group_event_data(d, id, &before.attrs));
        // Its members lose what it gave them now, not at the next sync.
        self.regroup(&mut tx, d, &members, actor).await?;
        tx.commit().await?;
        Ok(())
    }
}
