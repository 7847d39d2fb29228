//! The directory: organizations, connections, applications, users, groups, audit.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::changes::Resync;
use super::{
    conflict, cursor, enum_from_text, enum_text, flag, from_json, from_ms, json_value, ms, record, secret_context, to_json, Dialect,
    SqlStore, Tx,
};
use crate::core::application::{Application, ClientType, TokenEndpointAuth};
use crate::core::audit::{self, Actor, AuditEvent};
use crate::core::connection::Connection;
use crate::core::entitlements::Entitlements;
use crate::core::group::{Group, NewGroup};
use crate::core::ids::{new_id, IdKind};
use crate::core::organization::Organization;
use crate::core::roles::{derive_role, DEFAULT_GROUPS};
use crate::core::user::{User, UserProfile, UserView};
use crate::core::{Timestamp, ValidationError};
use crate::store::{Directory, Edit, EventFilter, Page, Stale, StoreError, StoreResult};

/// One row of `table` by id, mapped by `row`.
async fn load_by_id<T>(
    conn: &mut AnyConnection,
    table: &'static str,
    id: &str,
    row: fn(&AnyRow) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let sql = format!("SELECT * FROM {table} WHERE id = $1");
    let found = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    found.as_ref().map(row).transpose()
}

// ---------------------------------------------------------------- organizations

fn org_row(r: &AnyRow, domains: Vec<String>) -> StoreResult<Organization> {
    Ok(Organization {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        domains,
        email_policy: enum_from_text(&r.try_get::<String, _>("email_policy")?)?,
        groups_source: enum_from_text(&r.try_get::<String, _>("groups_source")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

pub(super) async fn load_org(conn: &mut AnyConnection, id_or_slug: &str) -> StoreResult<Option<Organization>> {
    let Some(row) =
        sqlx::query("SELECT * FROM organizations WHERE id = $1 OR slug = $1").bind(id_or_slug).fetch_optional(&mut *conn).await?
    else {
        return Ok(None);
    };
    let id: String = row.try_get("id")?;
    let domains = sqlx::query_scalar("SELECT domain FROM organization_domains WHERE organization_id = $1 ORDER BY domain")
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(org_row(&row, domains)?))
}

async fn slug_taken(conn: &mut AnyConnection, slug: &str, except_id: &str) -> StoreResult<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations WHERE slug = $1 AND id <> $2")
        .bind(slug)
        .bind(except_id)
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// Replaces an organization's domains, refusing any another organization owns.
async fn save_domains(conn: &mut AnyConnection, org_id: &str, domains: &[String]) -> StoreResult<()> {
    for (i, d) in domains.iter().enumerate() {
        let owner: Option<String> = sqlx::query_scalar("SELECT organization_id FROM organization_domains WHERE domain = $1")
            .bind(d)
            .fetch_optional(&mut *conn)
            .await?;
        if owner.is_some_and(|o| o != org_id) {
            return Err(conflict(&format!("domains[{i}]"), format!("the domain `{d}` already belongs to another organization")));
        }
    }
    sqlx::query("DELETE FROM organization_domains WHERE organization_id = $1").bind(org_id).execute(&mut *conn).await?;
    for d in domains {
        sqlx::query("INSERT INTO organization_domains (domain, organization_id) VALUES ($1, $2)")
            .bind(d)
            .bind(org_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A page of an organization's rows of `table`, by id (binds: organization, cursor, limit).
pub(super) fn organization_page(table: &str) -> String {
    format!("SELECT * FROM {table} WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3")
}

/// Binds: cursor, limit.
pub(super) const ORGANIZATIONS_PAGE: &str = "SELECT * FROM organizations WHERE id > $1 ORDER BY id LIMIT $2";
/// The domains of the organizations of that page (binds: cursor, limit).
pub(super) const ORGANIZATIONS_PAGE_DOMAINS: &str = "SELECT organization_id, domain FROM organization_domains \
     WHERE organization_id IN (SELECT id FROM organizations WHERE id > $1 ORDER BY id LIMIT $2) ORDER BY domain";
/// Binds: cursor, limit.
pub(super) const APPLICATIONS_PAGE: &str = "SELECT * FROM applications WHERE id > $1 ORDER BY id LIMIT $2";
/// A page of the audit log, newest first, and the values of its filters to bind in
/// order (then the cursor and the limit). Each combination of filters is its own
/// statement, so that the planner walks the index that serves it: a
/// `$n IS NULL OR column = $n` condition can use none.
pub(super) fn audit_page(f: &EventFilter) -> (String, Vec<&str>) {
    let mut binds = vec![];
    let mut conditions = vec![];
    for (column, value) in [("organization_id", &f.organization_id), ("action", &f.action), ("target_id", &f.target_id)] {
        match value {
            Some(v) => {
                binds.push(v.as_str());
                conditions.push(format!("{column} = ${}", binds.len()));
            }
            // The log of no organization (applications, signing keys).
            None if column == "organization_id" => conditions.push("organization_id IS NULL".to_owned()),
            None => {}
        }
    }
    let n = binds.len();
    let sql =
        format!("SELECT * FROM audit_events WHERE {} AND id < ${} ORDER BY id DESC LIMIT ${}", conditions.join(" AND "), n + 1, n + 2);
    (sql, binds)
}

impl SqlStore {
    /// Creates the organization with its default groups and entitlements, in one transaction.
    async fn insert_organization(&self, mut org: Organization, slug_given: bool, actor: &Actor) -> StoreResult<Organization> {
        let mut tx = self.write_tx().await?;
        if slug_taken(&mut tx, &org.slug, &org.id).await? {
            if slug_given {
                return Err(conflict("slug", format!("the slug `{}` is taken", org.slug)));
            }
            let base = org.slug.clone();
            let mut n = 2;
            while slug_taken(&mut tx, &org.slug, &org.id).await? {
                org.slug = format!("{}-{n}", &base[..base.len().min(58)]);
                n += 1;
            }
        }
        sqlx::query("INSERT INTO organizations (id, name, slug, created_at, updated_at, email_policy, groups_source) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&org.id)
            .bind(&org.name)
            .bind(&org.slug)
            .bind(ms(org.created_at))
            .bind(ms(org.updated_at))
            .bind(enum_text(&org.email_policy))
            .bind(enum_text(&org.groups_source))
            .execute(&mut *tx)
            .await?;
        save_domains(&mut tx, &org.id, &org.domains).await?;
        for name in DEFAULT_GROUPS {
            let g = Group {
                id: new_id(IdKind::Group),
                organization_id: org.id.clone(),
                name: name.into(),
                description: Some(format!("Built-in group: members get the `{name}` role.")),
                permissions: vec![],
                is_default: true,
                created_at: org.created_at,
                updated_at: org.created_at,
            };
            insert_group(&mut tx, &g).await?;
        }
        sqlx::query("INSERT INTO entitlements (organization_id, sso, group_sync, max_users, expires_at, updated_at) VALUES ($1, $2, $3, NULL, NULL, $4)")
            .bind(&org.id)
            .bind(1_i64)
            .bind(1_i64)
            .bind(ms(org.created_at))
            .execute(&mut *tx)
            .await?;
        record(&mut tx, self.clock.now(), Some(&org.id), actor, "organization.created", ("organization", &org.id), json_value(&org));
        self.commit_change(tx, Resync::Nobody, Some(Stale::Organization(org.id.clone())), "organization.created").await?;
        Ok(org)
    }
}

// ---------------------------------------------------------------- connections

fn connection_row(r: &AnyRow) -> StoreResult<Connection> {
    Ok(Connection {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        name: r.try_get("name")?,
        client_id: r.try_get("client_id")?,
        discovery_url: r.try_get("discovery_url")?,
        scopes: from_json(&r.try_get::<String, _>("scopes")?)?,
        logout_url: r.try_get("logout_url")?,
        provisioning: from_json(&r.try_get::<String, _>("provisioning")?)?,
        user_match: from_json(&r.try_get::<String, _>("user_match")?)?,
        group_sync: from_json(&r.try_get::<String, _>("group_sync")?)?,
        allow_hmac_id_tokens: flag(r, "allow_hmac_id_tokens")?,
        trust_unverified_email: flag(r, "trust_unverified_email")?,
        frontchannel_logout_by_subject: flag(r, "frontchannel_logout_by_subject")?,
        shared_redirect_uri: flag(r, "shared_redirect_uri")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

pub(super) async fn load_connection(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<Connection>> {
    load_by_id(conn, "connections", id, connection_row).await
}

// ---------------------------------------------------------------- applications

pub(super) fn application_row(r: &AnyRow) -> StoreResult<Application> {
    let client_type: ClientType = enum_from_text(&r.try_get::<String, _>("client_type")?)?;
    Ok(Application {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        client_id: r.try_get("client_id")?,
        client_type,
        id_token_signed_response_alg: r.try_get("id_token_signed_response_alg")?,
        redirect_uris: from_json(&r.try_get::<String, _>("redirect_uris")?)?,
        post_logout_redirect_uris: from_json(&r.try_get::<String, _>("post_logout_redirect_uris")?)?,
        expose_idp_tokens: flag(r, "expose_idp_tokens")?,
        backchannel_logout_uri: r.try_get("backchannel_logout_uri")?,
        frontchannel_logout_uri: r.try_get("frontchannel_logout_uri")?,
        frontchannel_logout_session_required: flag(r, "frontchannel_logout_session_required")?,
        access_token_format: enum_from_text(&r.try_get::<String, _>("access_token_format")?)?,
        access_token_audience: r.try_get("access_token_audience")?,
        token_endpoint_auth_method: match r.try_get::<Option<String>, _>("token_endpoint_auth_method")? {
            Some(m) => enum_from_text(&m)?,
            None => TokenEndpointAuth::default_for(client_type),
        },
        jwks: r.try_get::<Option<String>, _>("jwks")?.map(|j| from_json(&j)).transpose()?,
        jwks_uri: r.try_get("jwks_uri")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

async fn load_application(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<Application>> {
    load_by_id(conn, "applications", id, application_row).await
}

async fn save_application(conn: &mut AnyConnection, app: &Application) -> StoreResult<()> {
    sqlx::query("UPDATE applications SET name = $2, redirect_uris = $3, post_logout_redirect_uris = $4, expose_idp_tokens = $5, updated_at = $6, id_token_signed_response_alg = $7, backchannel_logout_uri = $8, access_token_format = $9, access_token_audience = $10, jwks = $11, jwks_uri = $12, frontchannel_logout_uri = $13, frontchannel_logout_session_required = $14 WHERE id = $1")
        .bind(&app.id)
        .bind(&app.name)
        .bind(to_json(&app.redirect_uris))
        .bind(to_json(&app.post_logout_redirect_uris))
        .bind(i64::from(app.expose_idp_tokens))
        .bind(ms(app.updated_at))
        .bind(&app.id_token_signed_response_alg)
        .bind(&app.backchannel_logout_uri)
        .bind(enum_text(&app.access_token_format))
        .bind(&app.access_token_audience)
        .bind(app.jwks.as_ref().map(to_json))
        .bind(&app.jwks_uri)
        .bind(&app.frontchannel_logout_uri)
        .bind(i64::from(app.frontchannel_logout_session_required))
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- groups

fn group_row(r: &AnyRow) -> StoreResult<Group> {
    Ok(Group {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        permissions: from_json(&r.try_get::<String, _>("permissions")?)?,
        is_default: flag(r, "is_default")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

async fn load_group(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<Group>> {
    load_by_id(conn, "groups", id, group_row).await
}

/// Refuses a group name the organization already uses.
async fn check_group_name_free(conn: &mut AnyConnection, g: &Group) -> StoreResult<()> {
    let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM groups WHERE organization_id = $1 AND name = $2")
        .bind(&g.organization_id)
        .bind(&g.name)
        .fetch_one(conn)
        .await?;
    if taken > 0 {
        return Err(conflict("name", format!("the organization already has a group named `{}`", g.name)));
    }
    Ok(())
}

async fn insert_group(conn: &mut AnyConnection, g: &Group) -> StoreResult<()> {
    check_group_name_free(&mut *conn, g).await?;
    sqlx::query("INSERT INTO groups (id, organization_id, name, description, permissions, is_default, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&g.id)
        .bind(&g.organization_id)
        .bind(&g.name)
        .bind(&g.description)
        .bind(to_json(&g.permissions))
        .bind(i64::from(g.is_default))
        .bind(ms(g.created_at))
        .bind(ms(g.updated_at))
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- users

fn user_row(r: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        connection_id: r.try_get("connection_id")?,
        email: r.try_get("email")?,
        email_verified: flag(r, "email_verified")?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        username: r.try_get("username")?,
        picture: r.try_get("picture")?,
        idp_sub: r.try_get("idp_sub")?,
        idp_groups: from_json(&r.try_get::<String, _>("idp_groups")?)?,
        attributes: from_json(&r.try_get::<String, _>("attributes")?)?,
        active: flag(r, "active")?,
        last_login_at: r.try_get::<Option<i64>, _>("last_login_at")?.map(from_ms).transpose()?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

/// Joins users with their groups and derives each one's role.
/// A user row selected with its `memberships` (see `Dialect::memberships`), and the
/// role those groups give.
pub(super) fn user_view_row(r: &AnyRow) -> StoreResult<UserView> {
    let user = user_row(r)?;
    let raw: Option<String> = r.try_get("memberships")?;
    let mut groups: Vec<(String, i64, String, String)> = from_json(raw.as_deref().unwrap_or("[]"))?;
    groups.sort();
    let permissions = groups.iter().map(|(_, _, p, _)| from_json::<Vec<String>>(p)).collect::<StoreResult<Vec<_>>>()?;
    let role =
        derive_role(groups.iter().zip(&permissions).map(|((name, default, _, _), perms)| (name.as_str(), *default != 0, perms.as_slice())));
    let synced_groups = groups.iter().filter(|(_, _, _, source)| source == "sync").map(|(name, ..)| name.clone()).collect();
    Ok(UserView { user, groups: groups.into_iter().map(|(name, ..)| name).collect(), synced_groups, role })
}

fn entitlements_row(r: &AnyRow) -> StoreResult<Entitlements> {
    Ok(Entitlements {
        sso: flag(r, "sso")?,
        group_sync: flag(r, "group_sync")?,
        max_users: r.try_get::<Option<i64>, _>("max_users")?.map(|n| n as u32),
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(from_ms).transpose()?,
    })
}

/// Inside a write transaction: whether the organization has a seat for one more user,
/// holding its licence row so concurrent sign-ins queue for the last seats. `Err` with
/// the seat count when it has none.
pub(super) async fn claim_seat(conn: &mut AnyConnection, dialect: Dialect, organization_id: &str) -> StoreResult<Result<(), u32>> {
    let sql = format!("SELECT * FROM entitlements WHERE organization_id = $1{}", dialect.for_update());
    let Some(row) = sqlx::query(&sql).bind(organization_id).fetch_optional(&mut *conn).await? else { return Ok(Ok(())) };
    let e = entitlements_row(&row)?;
    let Some(max) = e.max_users else { return Ok(Ok(())) };
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE organization_id = $1 AND active = 1")
        .bind(organization_id)
        .fetch_one(conn)
        .await?;
    Ok(if e.has_seat_for_one_more(users as u64) { Ok(()) } else { Err(max) })
}

impl SqlStore {
    /// One page of an organization's rows of `table`, in creation order.
    async fn page_of_organization(&self, table: &'static str, organization_id: &str, page: &Page) -> StoreResult<Vec<AnyRow>> {
        Ok(sqlx::query(&organization_page(table))
            .bind(organization_id)
            .bind(cursor(page, false))
            .bind(page.limit as i64)
            .fetch_all(&self.pool)
            .await?)
    }

    pub(super) async fn load_user(&self, conn: &mut AnyConnection, id: &str) -> StoreResult<Option<UserView>> {
        let row = sqlx::query(&self.queries.user_by_id).bind(id).fetch_optional(conn).await?;
        row.as_ref().map(user_view_row).transpose()
    }
}

/// Refuses a profile whose email, username or IdP subject another user of the
/// organization already has (each identifies one person at login).
pub(super) async fn check_user_unique(conn: &mut AnyConnection, org_id: &str, user_id: &str, u: &UserProfile) -> StoreResult<()> {
    if u.email.is_none() && u.username.is_none() && u.idp_sub.is_none() {
        return Ok(());
    }
    // One statement for the three keys, each answered by its unique index (an OR
    // of them would scan the organization's users).
    let taken: Option<(String, String)> = sqlx::query_as(
        "SELECT 'email', email FROM users WHERE organization_id = $1 AND email = $3 AND id <> $2 \
         UNION ALL SELECT 'username', username FROM users WHERE organization_id = $1 AND username = $4 AND id <> $2 \
         UNION ALL SELECT 'idp_sub', idp_sub FROM users WHERE organization_id = $1 AND idp_sub = $5 AND id <> $2 LIMIT 1",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(&u.email)
    .bind(&u.username)
    .bind(&u.idp_sub)
    .fetch_optional(&mut *conn)
    .await?;
    match taken {
        Some((column, value)) => Err(conflict(&column, format!("another user of this organization has {column} `{value}`"))),
        None => Ok(()),
    }
}

/// Sets a user's memberships to the named groups of their organization. A group the
/// user keeps stays as it was (set by group sync, or by hand); a new one is set by
/// hand, so group sync leaves it alone.
async fn set_manual_groups(conn: &mut AnyConnection, at: Timestamp, org_id: &str, user_id: &str, names: &[String]) -> StoreResult<()> {
    let mut ids = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM groups WHERE organization_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        ids.push(id.ok_or_else(|| ValidationError::new(format!("groups[{i}]"), format!("the organization has no group named `{name}`")))?);
    }
    let kept: Vec<(String, String)> =
        sqlx::query_as("SELECT group_id, source FROM group_memberships WHERE user_id = $1").bind(user_id).fetch_all(&mut *conn).await?;
    sqlx::query("DELETE FROM group_memberships WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    for id in ids {
        let source = kept.iter().find(|(group, _)| *group == id).map_or("manual", |(_, source)| source.as_str());
        sqlx::query("INSERT INTO group_memberships (group_id, user_id, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, user_id) DO NOTHING")
            .bind(&id)
            .bind(user_id)
            .bind(source)
            .bind(ms(at))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn profile_of(u: &User) -> UserProfile {
    UserProfile {
        email: u.email.clone(),
        username: u.username.clone(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        idp_sub: u.idp_sub.clone(),
    }
}

// ---------------------------------------------------------------- events

fn event_row(r: &AnyRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target_type: r.try_get("target_type")?,
        target_id: r.try_get("target_id")?,
        changes: from_json(&r.try_get::<String, _>("changes")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
    })
}

/// Deletes one row by id in a transaction with its audit record.
async fn delete_row(
    tx: &mut Tx,
    at: Timestamp,
    table: &str,
    id: &str,
    organization_id: Option<&str>,
    actor: &Actor,
    target_type: &'static str,
) -> StoreResult<()> {
    sqlx::query(&format!("DELETE FROM {table} WHERE id = $1")).bind(id).execute(&mut **tx).await?;
    record(tx, at, organization_id, actor, &format!("{target_type}.deleted"), (target_type, id), Value::Object(Default::default()));
    Ok(())
}

#[async_trait]
impl Directory for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_status(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> StoreResult<String> {
        let mut writing = self.writing().await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *writing)
            .await?;
        drop(writing);
        self.setting(key).await?.ok_or_else(|| StoreError::Corrupt(format!("setting {key} vanished")))
    }

    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let mut writing = self.writing().await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&mut *writing)
            .await?;
        Ok(())
    }

    async fn create_organization(&self, org: Organization, slug_given: bool, actor: &Actor) -> StoreResult<Organization> {
        // A derived slug may be taken by a concurrent creation between our check and
        // our insert; then retry with a random suffix, which racers will not share.
        let mut attempts = 0;
        let mut candidate = org.clone();
        loop {
            match self.insert_organization(candidate.clone(), slug_given, actor).await {
                Err(StoreError::Conflict { field, .. }) if field == "slug" && !slug_given && attempts < 5 => {
                    attempts += 1;
                    let suffix = new_id(IdKind::Event);
                    candidate.slug = format!("{}-{}", &org.slug[..org.slug.len().min(50)], &suffix[suffix.len() - 6..]);
                }
                other => return other,
            }
        }
    }

    async fn find_organization(&self, id_or_slug: &str) -> StoreResult<Option<Organization>> {
        load_org(&mut *self.conn().await?, id_or_slug).await
    }

    async fn list_organizations(&self, page: &Page) -> StoreResult<Vec<Organization>> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(ORGANIZATIONS_PAGE).bind(cursor(page, false)).bind(page.limit as i64).fetch_all(&mut *conn).await?;
        let domain_rows =
            sqlx::query(ORGANIZATIONS_PAGE_DOMAINS).bind(cursor(page, false)).bind(page.limit as i64).fetch_all(&mut *conn).await?;
        let mut domains: HashMap<String, Vec<String>> = HashMap::new();
        for r in domain_rows {
            domains.entry(r.try_get("organization_id")?).or_default().push(r.try_get("domain")?);
        }
        rows.iter().map(|r| org_row(r, domains.remove(&r.try_get::<String, _>("id")?).unwrap_or_default())).collect()
    }

    async fn update_organization(&self, id: &str, edit: Edit<'_, Organization, ()>, actor: &Actor) -> StoreResult<Organization> {
        let mut tx = self.write_tx().await?;
        self.hold_row(&mut tx, "organizations", id).await?;
        let before = load_org(&mut tx, id).await?.ok_or(StoreError::NotFound("organization"))?;
        let mut org = before.clone();
        edit(&mut org)?;
        org.updated_at = self.clock.now();
        if slug_taken(&mut tx, &org.slug, &org.id).await? {
            return Err(conflict("slug", format!("the slug `{}` is taken", org.slug)));
        }
        sqlx::query("UPDATE organizations SET name = $2, slug = $3, updated_at = $4, email_policy = $5, groups_source = $6 WHERE id = $1")
            .bind(&org.id)
            .bind(&org.name)
            .bind(&org.slug)
            .bind(ms(org.updated_at))
            .bind(enum_text(&org.email_policy))
            .bind(enum_text(&org.groups_source))
            .execute(&mut *tx)
            .await?;
        save_domains(&mut tx, &org.id, &org.domains).await?;
        let changes = audit::diff(&json_value(&before), &json_value(&org));
        record(&mut tx, self.clock.now(), Some(&org.id), actor, "organization.updated", ("organization", &org.id), changes);
        self.commit_change(tx, Resync::Nobody, Some(Stale::Organization(org.id.clone())), "organization.updated").await?;
        Ok(org)
    }

    async fn delete_organization(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let org = load_org(&mut tx, id).await?.ok_or(StoreError::NotFound("organization"))?;
        delete_row(&mut tx, self.clock.now(), "organizations", &org.id, Some(&org.id), actor, "organization").await?;
        self.commit_change(tx, Resync::Nobody, Some(Stale::Organization(org.id.clone())), "organization.deleted").await?;
        Ok(())
    }

    async fn create_connection(&self, c: Connection, client_secret: &str, actor: &Actor) -> StoreResult<Connection> {
        let sealed = self.secrets.encrypt_str(&secret_context(&c.id), client_secret).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        load_org(&mut tx, &c.organization_id).await?.ok_or(StoreError::NotFound("organization"))?;
        sqlx::query("INSERT INTO connections (id, organization_id, name, client_id, client_secret_enc, discovery_url, scopes, logout_url, provisioning, user_match, group_sync, created_at, updated_at, allow_hmac_id_tokens, trust_unverified_email, shared_redirect_uri, frontchannel_logout_by_subject) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)")
            .bind(&c.id)
            .bind(&c.organization_id)
            .bind(&c.name)
            .bind(&c.client_id)
            .bind(sealed)
            .bind(&c.discovery_url)
            .bind(to_json(&c.scopes))
            .bind(&c.logout_url)
            .bind(to_json(&c.provisioning))
            .bind(to_json(&c.user_match))
            .bind(to_json(&c.group_sync))
            .bind(ms(c.created_at))
            .bind(ms(c.updated_at))
            .bind(i64::from(c.allow_hmac_id_tokens))
            .bind(i64::from(c.trust_unverified_email))
            .bind(i64::from(c.shared_redirect_uri))
            .bind(i64::from(c.frontchannel_logout_by_subject))
            .execute(&mut *tx)
            .await?;
        record(&mut tx, self.clock.now(), Some(&c.organization_id), actor, "connection.created", ("connection", &c.id), json_value(&c));
        self.commit_change(tx, Resync::Nobody, Some(Stale::Organization(c.organization_id.clone())), "connection.created").await?;
        Ok(c)
    }

    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        load_connection(&mut *self.conn().await?, id).await
    }

    async fn list_connections(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<Connection>> {
        self.page_of_organization("connections", organization_id, page).await?.iter().map(connection_row).collect()
    }

    async fn update_connection(&self, id: &str, edit: Edit<'_, Connection, Option<String>>, actor: &Actor) -> StoreResult<Connection> {
        let mut tx = self.write_tx().await?;
        self.hold_row(&mut tx, "connections", id).await?;
        let before = load_connection(&mut tx, id).await?.ok_or(StoreError::NotFound("connection"))?;
        let mut c = before.clone();
        let new_secret = edit(&mut c)?;
        c.updated_at = self.clock.now();
        sqlx::query("UPDATE connections SET name = $2, client_id = $3, discovery_url = $4, scopes = $5, logout_url = $6, provisioning = $7, user_match = $8, group_sync = $9, updated_at = $10, allow_hmac_id_tokens = $11, trust_unverified_email = $12, shared_redirect_uri = $13, frontchannel_logout_by_subject = $14 WHERE id = $1")
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.client_id)
            .bind(&c.discovery_url)
            .bind(to_json(&c.scopes))
            .bind(&c.logout_url)
            .bind(to_json(&c.provisioning))
            .bind(to_json(&c.user_match))
            .bind(to_json(&c.group_sync))
            .bind(ms(c.updated_at))
            .bind(i64::from(c.allow_hmac_id_tokens))
            .bind(i64::from(c.trust_unverified_email))
            .bind(i64::from(c.shared_redirect_uri))
            .bind(i64::from(c.frontchannel_logout_by_subject))
            .execute(&mut *tx)
            .await?;
        let mut changes = audit::diff(&json_value(&before), &json_value(&c));
        if let Some(secret) = new_secret {
            let sealed = self.secrets.encrypt_str(&secret_context(&c.id), &secret).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("UPDATE connections SET client_secret_enc = $2 WHERE id = $1").bind(&c.id).bind(sealed).execute(&mut *tx).await?;
            changes["client_secret"] = Value::from("changed");
        }
        record(&mut tx, self.clock.now(), Some(&c.organization_id), actor, "connection.updated", ("connection", &c.id), changes);
        // New sync rules reach the connection's users without waiting for them to sign in.
        let resync = if c.group_sync != before.group_sync {
            Resync::Connection { organization_id: &c.organization_id, connection_id: &c.id }
        } else {
            Resync::Nobody
        };
        self.commit_change(tx, resync, Some(Stale::Organization(c.organization_id.clone())), "connection.updated").await?;
        Ok(c)
    }

    async fn delete_connection(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let c = load_connection(&mut tx, id).await?.ok_or(StoreError::NotFound("connection"))?;
        delete_row(&mut tx, self.clock.now(), "connections", &c.id, Some(&c.organization_id), actor, "connection").await?;
        self.commit_change(tx, Resync::Nobody, Some(Stale::Organization(c.organization_id.clone())), "connection.deleted").await?;
        Ok(())
    }

    async fn connection_client_secret(&self, id: &str) -> StoreResult<String> {
        let sealed: String = sqlx::query_scalar("SELECT client_secret_enc FROM connections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("connection"))?;
        self.secrets.decrypt_str(&secret_context(id), &sealed).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn create_application(&self, app: Application, secret_hash: &str, actor: &Actor) -> StoreResult<Application> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO applications (id, name, client_id, client_secret_hash, redirect_uris, post_logout_redirect_uris, expose_idp_tokens, created_at, updated_at, client_type, id_token_signed_response_alg, backchannel_logout_uri, access_token_format, access_token_audience, token_endpoint_auth_method, jwks, jwks_uri, frontchannel_logout_uri, frontchannel_logout_session_required) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)")
            .bind(&app.id)
            .bind(&app.name)
            .bind(&app.client_id)
            .bind(secret_hash)
            .bind(to_json(&app.redirect_uris))
            .bind(to_json(&app.post_logout_redirect_uris))
            .bind(i64::from(app.expose_idp_tokens))
            .bind(ms(app.created_at))
            .bind(ms(app.updated_at))
            .bind(enum_text(&app.client_type))
            .bind(&app.id_token_signed_response_alg)
            .bind(&app.backchannel_logout_uri)
            .bind(enum_text(&app.access_token_format))
            .bind(&app.access_token_audience)
            .bind(enum_text(&app.token_endpoint_auth_method))
            .bind(app.jwks.as_ref().map(to_json))
            .bind(&app.jwks_uri)
            .bind(&app.frontchannel_logout_uri)
            .bind(i64::from(app.frontchannel_logout_session_required))
            .execute(&mut *tx)
            .await?;
        record(&mut tx, self.clock.now(), None, actor, "application.created", ("application", &app.id), json_value(&app));
        self.commit_change(tx, Resync::Nobody, Some(Stale::Application(app.client_id.clone())), "application.created").await?;
        Ok(app)
    }

    async fn get_application(&self, id: &str) -> StoreResult<Option<Application>> {
        load_application(&mut *self.conn().await?, id).await
    }

    async fn list_applications(&self, page: &Page) -> StoreResult<Vec<Application>> {
        let rows = sqlx::query(APPLICATIONS_PAGE).bind(cursor(page, false)).bind(page.limit as i64).fetch_all(&self.pool).await?;
        rows.iter().map(application_row).collect()
    }

    async fn update_application(&self, id: &str, edit: Edit<'_, Application, ()>, actor: &Actor) -> StoreResult<Application> {
        let mut tx = self.write_tx().await?;
        self.hold_row(&mut tx, "applications", id).await?;
        let before = load_application(&mut tx, id).await?.ok_or(StoreError::NotFound("application"))?;
        let mut app = before.clone();
        edit(&mut app)?;
        app.updated_at = self.clock.now();
        save_application(&mut tx, &app).await?;
        let changes = audit::diff(&json_value(&before), &json_value(&app));
        record(&mut tx, self.clock.now(), None, actor, "application.updated", ("application", &app.id), changes);
        self.commit_change(tx, Resync::Nobody, Some(Stale::Application(app.client_id.clone())), "application.updated").await?;
        Ok(app)
    }

    async fn delete_application(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let app = load_application(&mut tx, id).await?.ok_or(StoreError::NotFound("application"))?;
        delete_row(&mut tx, self.clock.now(), "applications", id, None, actor, "application").await?;
        self.commit_change(tx, Resync::Nobody, Some(Stale::Application(app.client_id.clone())), "application.deleted").await?;
        Ok(())
    }

    async fn set_application_secret(&self, id: &str, secret_hash: &str, actor: &Actor) -> StoreResult<Application> {
        let mut tx = self.write_tx().await?;
        let mut app = load_application(&mut tx, id).await?.ok_or(StoreError::NotFound("application"))?;
        app.updated_at = self.clock.now();
        sqlx::query("UPDATE applications SET client_secret_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(secret_hash)
            .bind(ms(app.updated_at))
            .execute(&mut *tx)
            .await?;
        record(
            &mut tx,
            self.clock.now(),
            None,
            actor,
            "application.secret_rotated",
            ("application", id),
            serde_json::json!({"client_secret": "changed"}),
        );
        self.commit_change(tx, Resync::Nobody, Some(Stale::Application(app.client_id.clone())), "application.secret_rotated").await?;
        Ok(app)
    }

    async fn create_user(&self, organization_id: &str, p: UserProfile, groups: Vec<String>, actor: &Actor) -> StoreResult<UserView> {
        let mut tx = self.write_tx().await?;
        load_org(&mut tx, organization_id).await?.ok_or(StoreError::NotFound("organization"))?;
        let id = new_id(IdKind::User);
        check_user_unique(&mut tx, organization_id, &id, &p).await?;
        if let Err(max) = claim_seat(&mut tx, self.dialect, organization_id).await? {
            return Err(StoreError::Refused {
                code: "seat_limit_reached",
                message: format!("the organization has used all of its {max} seats (entitlements.max_users)"),
            });
        }
        let t = self.clock.now();
        sqlx::query("INSERT INTO users (id, organization_id, connection_id, email, email_verified, first_name, last_name, username, picture, idp_sub, idp_groups, attributes, last_login_at, created_at, updated_at) VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, NULL, $8, '[]', '{}', NULL, $9, $9)")
            .bind(&id)
            .bind(organization_id)
            .bind(&p.email)
            .bind(0_i64)
            .bind(&p.first_name)
            .bind(&p.last_name)
            .bind(&p.username)
            .bind(&p.idp_sub)
            .bind(ms(t))
            .execute(&mut *tx)
            .await?;
        set_manual_groups(&mut tx, self.clock.now(), organization_id, &id, &groups).await?;
        let view = self.load_user(&mut tx, &id).await?.ok_or(StoreError::NotFound("user"))?;
        record(&mut tx, self.clock.now(), Some(organization_id), actor, "user.created", ("user", &id), json_value(&view));
        self.commit_change(tx, Resync::Nobody, None, "user.created").await?;
        Ok(view)
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserView>> {
        self.load_user(&mut *self.conn().await?, id).await
    }

    async fn list_users(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<UserView>> {
        let rows = sqlx::query(&self.queries.users_of_org)
            .bind(organization_id)
            .bind(cursor(page, false))
            .bind(page.limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_view_row).collect()
    }

    async fn update_user(&self, id: &str, edit: Edit<'_, User, Option<Vec<String>>>, actor: &Actor) -> StoreResult<UserView> {
        let mut tx = self.write_tx().await?;
        self.hold_row(&mut tx, "users", id).await?;
        let before = self.load_user(&mut tx, id).await?.ok_or(StoreError::NotFound("user"))?;
        let mut u = before.user.clone();
        let groups = edit(&mut u)?;
        u.updated_at = self.clock.now();
        check_user_unique(&mut tx, &u.organization_id, &u.id, &profile_of(&u)).await?;
        if u.active && !before.user.active {
            if let Err(max) = claim_seat(&mut tx, self.dialect, &u.organization_id).await? {
                let message = format!("the organization has used all of its {max} seats");
                return Err(StoreError::Refused { code: "seat_limit_reached", message });
            }
        }
        sqlx::query(
            "UPDATE users SET email = $2, username = $3, first_name = $4, last_name = $5, updated_at = $6, active = $7 WHERE id = $1",
        )
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.username)
        .bind(&u.first_name)
        .bind(&u.last_name)
        .bind(ms(u.updated_at))
        .bind(i64::from(u.active))
        .execute(&mut *tx)
        .await?;
        if let Some(groups) = groups {
            set_manual_groups(&mut tx, self.clock.now(), &u.organization_id, &u.id, &groups).await?;
        }
        let after = self.load_user(&mut tx, id).await?.ok_or(StoreError::NotFound("user"))?;
        let changes = audit::diff(&json_value(&before), &json_value(&after));
        record(&mut tx, self.clock.now(), Some(&u.organization_id), actor, "user.updated", ("user", id), changes);
        self.commit_change(tx, Resync::Nobody, None, "user.updated").await?;
        Ok(after)
    }

    async fn delete_user(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let u = self.load_user(&mut tx, id).await?.ok_or(StoreError::NotFound("user"))?;
        // Memberships in directory groups name the user by id, without a foreign key.
        sqlx::query("DELETE FROM directory_group_members WHERE member_id = $1").bind(id).execute(&mut *tx).await?;
        delete_row(&mut tx, self.clock.now(), "users", id, Some(&u.user.organization_id), actor, "user").await?;
        self.commit_change(tx, Resync::Nobody, None, "user.deleted").await?;
        Ok(())
    }

    async fn create_group(&self, organization_id: &str, g: NewGroup, actor: &Actor) -> StoreResult<Group> {
        let mut tx = self.write_tx().await?;
        load_org(&mut tx, organization_id).await?.ok_or(StoreError::NotFound("organization"))?;
        let t = self.clock.now();
        let group = Group {
            id: new_id(IdKind::Group),
            organization_id: organization_id.into(),
            name: g.name,
            description: g.description,
            permissions: g.permissions,
            is_default: false,
            created_at: t,
            updated_at: t,
        };
        insert_group(&mut tx, &group).await?;
        record(&mut tx, self.clock.now(), Some(organization_id), actor, "group.created", ("group", &group.id), json_value(&group));
        self.commit_change(tx, Resync::Organization(organization_id), None, "group.created").await?;
        Ok(group)
    }

    async fn get_group(&self, id: &str) -> StoreResult<Option<Group>> {
        load_group(&mut *self.conn().await?, id).await
    }

    async fn list_groups(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<Group>> {
        self.page_of_organization("groups", organization_id, page).await?.iter().map(group_row).collect()
    }

    async fn update_group(&self, id: &str, edit: Edit<'_, Group, ()>, actor: &Actor) -> StoreResult<Group> {
        let mut tx = self.write_tx().await?;
        self.hold_row(&mut tx, "groups", id).await?;
        let before = load_group(&mut tx, id).await?.ok_or(StoreError::NotFound("group"))?;
        let mut g = before.clone();
        edit(&mut g)?;
        g.updated_at = self.clock.now();
        if g.name != before.name {
            check_group_name_free(&mut tx, &g).await?;
        }
        sqlx::query("UPDATE groups SET name = $2, description = $3, permissions = $4, updated_at = $5 WHERE id = $1")
            .bind(&g.id)
            .bind(&g.name)
            .bind(&g.description)
            .bind(to_json(&g.permissions))
            .bind(ms(g.updated_at))
            .execute(&mut *tx)
            .await?;
        let changes = audit::diff(&json_value(&before), &json_value(&g));
        record(&mut tx, self.clock.now(), Some(&g.organization_id), actor, "group.updated", ("group", id), changes);
        self.commit_change(tx, Resync::Organization(&g.organization_id), None, "group.updated").await?;
        Ok(g)
    }

    async fn delete_group(&self, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let g = load_group(&mut tx, id).await?.ok_or(StoreError::NotFound("group"))?;
        if g.is_default {
            return Err(StoreError::Refused {
                code: "default_group",
                message: format!("`{}` is a default group and cannot be deleted", g.name),
            });
        }
        delete_row(&mut tx, self.clock.now(), "groups", id, Some(&g.organization_id), actor, "group").await?;
        self.commit_change(tx, Resync::Organization(&g.organization_id), None, "group.deleted").await?;
        Ok(())
    }

    async fn entitlements(&self, organization_id: &str) -> StoreResult<(Entitlements, u64)> {
        let row =
            sqlx::query("SELECT * FROM entitlements WHERE organization_id = $1").bind(organization_id).fetch_optional(&self.pool).await?;
        let e = row.as_ref().map(entitlements_row).transpose()?.unwrap_or_default();
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE organization_id = $1 AND active = 1")
            .bind(organization_id)
            .fetch_one(&self.pool)
            .await?;
        Ok((e, users as u64))
    }

    async fn put_entitlements(&self, organization_id: &str, e: &Entitlements, actor: &Actor) -> StoreResult<Entitlements> {
        let mut tx = self.write_tx().await?;
        let sql = format!("SELECT * FROM entitlements WHERE organization_id = $1{}", self.dialect.for_update());
        let before = sqlx::query(&sql).bind(organization_id).fetch_optional(&mut *tx).await?;
        let before = before.as_ref().map(entitlements_row).transpose()?.unwrap_or_default();
        sqlx::query(
            "INSERT INTO entitlements (organization_id, sso, group_sync, max_users, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (organization_id) DO UPDATE SET sso = excluded.sso, group_sync = excluded.group_sync, \
             max_users = excluded.max_users, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(organization_id)
        .bind(i64::from(e.sso))
        .bind(i64::from(e.group_sync))
        .bind(e.max_users.map(i64::from))
        .bind(e.expires_at.map(ms))
        .bind(ms(self.clock.now()))
        .execute(&mut *tx)
        .await?;
        let changes = audit::diff(&json_value(&before), &json_value(e));
        record(&mut tx, self.clock.now(), Some(organization_id), actor, "entitlements.updated", ("organization", organization_id), changes);
        self.commit_change(tx, Resync::Nobody, Some(Stale::Organization(organization_id.to_owned())), "entitlements.updated").await?;
        Ok(e.clone())
    }

    async fn list_events(&self, f: &EventFilter, page: &Page) -> StoreResult<Vec<AuditEvent>> {
        let (sql, filters) = audit_page(f);
        let mut q = sqlx::query(&sql);
        for value in filters {
            q = q.bind(value);
        }
        let rows = q.bind(cursor(page, true)).bind(page.limit as i64).fetch_all(&self.pool).await?;
        rows.iter().map(event_row).collect()
    }
}
