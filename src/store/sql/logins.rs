//! Login state in SQL.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::changes::Resync;
use super::directory::{application_row, claim_seat, load_org, user_view_row};
use super::webhooks::emit;
use super::{cursor, from_json, from_ms, json_value, ms, param_list, record, to_json, Dialect, Queries, SqlStore};
use crate::core::application::Application;
use crate::core::audit::Actor;
use crate::core::claims::{grants_refresh_token, IdpProfile};
use crate::core::connection::{Connection, GroupSync, Provisioning, UserMatch};
use crate::core::event::EventType;
use crate::core::group_sync::SyncJob;
use crate::core::ids::{new_id, IdKind};
use crate::core::organization::Organization;
use crate::core::session::UpstreamTokens;
use crate::core::user::UserView;
use crate::core::Timestamp;
use crate::store::{
    EndedSession, FirstTokens, Grant, GroupSyncOf, IdpGroupsSource, IssuedToken, Logins, NextTokens, Page, Provisioned, Redemption,
    RefreshState, RefreshToken, RevokedTokens, Rotation, Session, SessionFilter, SessionHandle, SignIn, Stale, StoreError, StoreResult,
    StoredSigningKey,
};

fn key_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

fn upstream_context(session_id: &str) -> String {
    format!("session:{session_id}:upstream")
}

fn opt_ms(r: &AnyRow, column: &str) -> StoreResult<Option<Timestamp>> {
    r.try_get::<Option<i64>, _>(column)?.map(from_ms).transpose()
}

impl SqlStore {
    fn session_row(&self, r: &AnyRow) -> StoreResult<Session> {
        let id: String = r.try_get("id")?;
        let upstream = match r.try_get::<Option<String>, _>("upstream_enc")? {
            Some(sealed) => {
                let json = self.secrets.decrypt_str(&upstream_context(&id), &sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Some(from_json(&json)?)
            }
            None => None,
        };
        Ok(Session {
            id_hash: r.try_get("id_hash")?,
            user_id: r.try_get("user_id")?,
            organization_id: r.try_get("organization_id")?,
            connection_id: r.try_get("connection_id")?,
            auth_time: from_ms(r.try_get("auth_time")?)?,
            created_at: from_ms(r.try_get("created_at")?)?,
            expires_at: from_ms(r.try_get("expires_at")?)?,
            idle_expires_at: from_ms(r.try_get("idle_expires_at")?)?,
            last_active_at: from_ms(r.try_get("last_active_at")?)?,
            idp_sub: r.try_get("idp_sub")?,
            idp_sid: r.try_get("idp_sid")?,
            upstream,
            refresh: RefreshState {
                due_at: opt_ms(r, "refresh_at")?,
                last_refreshed_at: opt_ms(r, "refreshed_at")?,
                failing_since: opt_ms(r, "refresh_failing_since")?,
                last_error: r.try_get("refresh_error")?,
            },
            id,
        })
    }

    fn seal_upstream(&self, session_id: &str, tokens: &UpstreamTokens) -> StoreResult<String> {
        self.secrets.encrypt_str(&upstream_context(session_id), &to_json(tokens)).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn grant_row(r: &AnyRow) -> StoreResult<Grant> {
    Ok(Grant {
        code_hash: r.try_get("code_hash")?,
        application_id: r.try_get("application_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        user_id: r.try_get("user_id")?,
        session_hash: r.try_get("session_hash")?,
        session_id: r.try_get::<Option<String>, _>("session_id")?.unwrap_or_default(),
        scope: r.try_get("scope")?,
        nonce: r.try_get("nonce")?,
        code_challenge: r.try_get("code_challenge")?,
        auth_time: from_ms(r.try_get("auth_time")?)?,
        claims: from_json(&r.try_get::<String, _>("claims")?)?,
        code_expires_at: from_ms(r.try_get("code_expires_at")?)?,
    })
}

/// The user a profile belongs to: first one this IdP subject already signed in as,
/// then one matched by the connection's rule. Only ever within the organization.
async fn find_user(conn: &mut AnyConnection, c: &Connection, p: &IdpProfile) -> StoreResult<Option<String>> {
    let by_sub: Option<String> = sqlx::query_scalar(
        "SELECT id FROM users WHERE organization_id = $1 AND idp_sub = $2 AND (connection_id = $3 OR connection_id IS NULL)",
    )
    .bind(&c.organization_id)
    .bind(&p.idp_sub)
    .bind(&c.id)
    .fetch_optional(&mut *conn)
    .await?;
    if by_sub.is_some() {
        return Ok(by_sub);
    }
    let (column, value) = match c.user_match {
        // An address the IdP does not say is verified may be anyone's typing.
        UserMatch::Email if !(p.email_verified || c.trust_unverified_email) => return Ok(None),
        UserMatch::Email => ("email", p.email.as_deref()),
        UserMatch::PreferredUsername => ("username", p.username.as_deref()),
        UserMatch::Sub => return Ok(None),
    };
    let Some(value) = value else { return Ok(None) };
    // A user already linked to another IdP subject is someone else.
    let sql = format!("SELECT id FROM users WHERE organization_id = $1 AND {column} = $2 AND (idp_sub IS NULL OR idp_sub = $3)");
    Ok(sqlx::query_scalar(&sql).bind(&c.organization_id).bind(value).bind(&p.idp_sub).fetch_optional(&mut *conn).await?)
}

const INSERT_GRANT: &str = "INSERT INTO grants (code_hash, application_id, redirect_uri, user_id, session_hash, scope, nonce, \
     code_challenge, auth_time, claims, code_expires_at, session_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const INSERT_SESSION: &str = "INSERT INTO sessions (id_hash, user_id, organization_id, connection_id, auth_time, created_at, expires_at, \
     id, idle_expires_at, last_active_at, idp_sub, idp_sid, upstream_enc, refresh_at) \
     VALUES ($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)";
const INSERT_USED_STATE: &str = "INSERT INTO used_login_states (state_hash, expires_at) VALUES ($27, $28)";
const REDEEM_GRANT: &str =
    "UPDATE grants SET redeemed_at = $2, token_hash = $3, token_expires_at = $4, token_issued_at = $2 WHERE code_hash = $1 \
     AND redeemed_at IS NULL RETURNING *, (SELECT CASE WHEN idle_expires_at < expires_at THEN idle_expires_at ELSE expires_at END \
     FROM sessions WHERE id_hash = grants.session_hash) AS session_expires_at";

/// The grant insert, with the sign-in's login-state and session inserts when it has one.
fn grant_sql(with_sign_in: bool, dialect: Dialect) -> String {
    match (with_sign_in, dialect) {
        (false, _) => INSERT_GRANT.to_owned(),
        // SQLite runs the statements of one string in turn, stopping at the first error;
        // PostgreSQL takes one statement, so the other inserts ride in CTEs.
        (true, Dialect::Sqlite) => format!("{INSERT_USED_STATE}; {INSERT_SESSION}; {INSERT_GRANT}"),
        (true, Dialect::Postgres) => format!("WITH used AS ({INSERT_USED_STATE}), new_session AS ({INSERT_SESSION}) {INSERT_GRANT}"),
    }
}

/// Newest first (binds: user).
pub(super) const SESSIONS_OF_USER: &str = "SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC";

/// Claims the sessions whose refresh is due, oldest due first (binds: now, lease end,
/// limit). PostgreSQL: replicas claiming at once skip each other's rows instead of
/// queueing on them. SQLite has one writer, so the UPDATE alone is atomic.
pub(super) fn claim_due_refreshes(dialect: Dialect) -> String {
    let skip_locked = match dialect {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    format!(
        "UPDATE sessions SET refresh_claimed_until = $2 WHERE id_hash IN (SELECT id_hash FROM sessions \
         WHERE refresh_at <= $1 AND (refresh_claimed_until IS NULL OR refresh_claimed_until <= $1) \
         AND expires_at > $1 AND idle_expires_at > $1 \
         ORDER BY refresh_at LIMIT $3{skip_locked}) RETURNING *"
    )
}

/// The writes of a returning user's sign-in, as this store sends them, for the login
/// benchmark to time on their own (its floor): the profile refresh (binds as
/// `refresh_profile`), the login state, session and code (binds as `create_grant`),
/// and the code's redemption (binds as `redeem_grant`).
#[doc(hidden)]
pub fn sign_in_statements(dialect: Dialect) -> [String; 3] {
    [Queries::new(dialect).refresh_by_subject, grant_sql(true, dialect), REDEEM_GRANT.to_owned()]
}

fn sync_job_row(r: &AnyRow) -> StoreResult<SyncJob> {
    Ok(SyncJob {
        id: r.try_get("id")?,
        organization_id: r.try_get("organization_id")?,
        connection_id: r.try_get("connection_id")?,
        reason: r.try_get("reason")?,
        status: r.try_get("status")?,
        total: r.try_get::<i64, _>("total")? as u64,
        done: r.try_get::<i64, _>("done")? as u64,
        error: r.try_get("error")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

/// Binds the profile refresh (`Queries::refresh_by_*`).
fn refresh_profile<'q>(
    sql: &'q str,
    c: &'q Connection,
    p: &'q IdpProfile,
    login_at: Timestamp,
    key: &'q str,
    is_login: bool,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(&c.id)
        .bind(&p.idp_sub)
        .bind(&p.email)
        .bind(i64::from(p.email_verified))
        .bind(&p.first_name)
        .bind(&p.last_name)
        .bind(&p.username)
        .bind(&p.picture)
        .bind(to_json(&p.attributes))
        .bind(ms(login_at))
        .bind(key)
        .bind(i64::from(is_login))
}

impl SqlStore {
    /// Fast path, one statement: the IdP subject has signed in here before.
    async fn signed_in_before(&self, c: &Connection, p: &IdpProfile, login_at: Timestamp) -> StoreResult<Option<Box<UserView>>> {
        let mut writing = self.writing().await?;
        let row = refresh_profile(&self.queries.refresh_by_subject, c, p, login_at, &c.organization_id, true)
            .fetch_optional(&mut *writing)
            .await?;
        row.as_ref().map(|r| user_view_row(r).map(Box::new)).transpose()
    }

    /// First sign-in of this subject: match by the connection's rule, or create.
    async fn first_sign_in(&self, c: &Connection, p: &IdpProfile, login_at: Timestamp) -> StoreResult<Provisioned> {
        let mut tx = self.write_tx().await?;
        let mut existing = find_user(&mut tx, c, p).await?;
        if let Some(found) = &existing {
            // Two subjects matching one user at once: the first to hold the row links
            // it, and the other finds it linked to someone else.
            self.hold_row(&mut tx, "users", found).await?;
            existing = find_user(&mut tx, c, p).await?;
        }
        if let Some(found) = &existing {
            let active: i64 = sqlx::query_scalar("SELECT active FROM users WHERE id = $1").bind(found).fetch_one(&mut *tx).await?;
            if active == 0 {
                return Ok(Provisioned::Deactivated);
            }
        }
        let id = match existing.clone() {
            Some(id) => id,
            None if c.provisioning == Provisioning::ExistingUsers => return Ok(Provisioned::NotAllowed),
            None => {
                if let Err(max) = claim_seat(&mut tx, self.dialect, &c.organization_id).await? {
                    return Ok(Provisioned::NoSeat(max));
                }
                let id = new_id(IdKind::User);
                sqlx::query("INSERT INTO users (id, organization_id, connection_id, email, email_verified, idp_sub, idp_groups, attributes, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, '[]', '{}', $6, $6)")
                    .bind(&id)
                    .bind(&c.organization_id)
                    .bind(&c.id)
                    .bind(&p.email)
                    .bind(&p.idp_sub)
                    .bind(ms(login_at))
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        let row = refresh_profile(&self.queries.refresh_by_id, c, p, login_at, &id, true).fetch_one(&mut *tx).await?;
        let user = user_view_row(&row)?;
        let action = if existing.is_some() { "user.linked" } else { "user.provisioned" };
        let actor = Actor(format!("login:{}", c.id));
        record(&mut tx, self.clock.now(), Some(&c.organization_id), &actor, action, ("user", &id), json_value(&user));
        tx.commit().await?;
        Ok(Provisioned::User(Box::new(user)))
    }
}

#[async_trait]
impl Logins for SqlStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let kid: String = r.try_get("kid")?;
                let sealed: String = r.try_get("private_key_enc")?;
                let pkcs8 = self.secrets.decrypt(&key_context(&kid), &sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(StoredSigningKey {
                    alg: r.try_get("alg")?,
                    pkcs8,
                    public_jwk: from_json(&r.try_get::<String, _>("public_jwk")?)?,
                    created_at: from_ms(r.try_get("created_at")?)?,
                    retired_at: r.try_get::<Option<i64>, _>("retired_at")?.map(from_ms).transpose()?,
                    kid,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, k: &StoredSigningKey, replace: bool, actor: &Actor) -> StoreResult<bool> {
        let sealed = self.secrets.encrypt(&key_context(&k.kid), &k.pkcs8).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        // Key changes take turns (SQLite's write transaction already does): two
        // replicas adding at once would otherwise each leave a live key.
        if self.dialect == Dialect::Postgres {
            sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        if replace {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE alg = $2 AND retired_at IS NULL")
                .bind(ms(k.created_at))
                .bind(&k.alg)
                .execute(&mut *tx)
                .await?;
        } else {
            let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE alg = $1 AND retired_at IS NULL")
                .bind(&k.alg)
                .fetch_one(&mut *tx)
                .await?;
            if live > 0 {
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(sealed)
        .bind(to_json(&k.public_jwk))
        .bind(ms(k.created_at))
        .execute(&mut *tx)
        .await?;
        record(&mut tx, self.clock.now(), None, actor, "signing_key.created", ("signing_key", &k.kid), serde_json::json!({"alg": k.alg}));
        self.commit_change(tx, Resync::Nobody, Some(Stale::SigningKeys), "signing_key.created").await?;
        Ok(true)
    }

    async fn delete_signing_keys_retired_before(&self, cutoff: Timestamp) -> StoreResult<()> {
        let mut writing = self.writing().await?;
        sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(ms(cutoff))
            .execute(&mut *writing)
            .await?;
        Ok(())
    }

    async fn organization_by_domain(&self, domain: &str) -> StoreResult<Option<Organization>> {
        let mut conn = self.conn().await?;
        let id: Option<String> = sqlx::query_scalar("SELECT organization_id FROM organization_domains WHERE domain = $1")
            .bind(domain.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?;
        match id {
            Some(id) => load_org(&mut conn, &id).await,
            None => Ok(None),
        }
    }

    async fn application_by_client_id(&self, client_id: &str) -> StoreResult<Option<(Application, String)>> {
        let row = sqlx::query("SELECT * FROM applications WHERE client_id = $1").bind(client_id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok((application_row(&r)?, r.try_get("client_secret_hash")?))).transpose()
    }

    async fn provision_user(&self, c: &Connection, p: &IdpProfile, login_at: Timestamp) -> StoreResult<Provisioned> {
        if let Some(user) = self.signed_in_before(c, p, login_at).await? {
            return Ok(Provisioned::User(user));
        }
        match self.first_sign_in(c, p, login_at).await {
            // Another sign-in of the same person created the user meanwhile (PostgreSQL
            // runs both lookups before either insert): theirs is ours.
            Err(conflict @ StoreError::Conflict { .. }) => match self.signed_in_before(c, p, login_at).await? {
                Some(user) => Ok(Provisioned::User(user)),
                None => Err(conflict),
            },
            other => other,
        }
    }

    async fn sync_groups(&self, of: GroupSyncOf<'_>, groups: IdpGroupsSource<'_>, actor: &Actor) -> StoreResult<UserView> {
        let mut tx = self.write_tx().await?;
        let user = self.sync_groups_in(&mut tx, of, groups, actor).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn claim_sync_job(&self) -> StoreResult<Option<SyncJob>> {
        let mut writing = self.writing().await?;
        let row = sqlx::query(
            "UPDATE sync_jobs SET status = 'running', updated_at = $1 \
             WHERE id = (SELECT id FROM sync_jobs WHERE status = 'queued' ORDER BY id LIMIT 1) AND status = 'queued' RETURNING *",
        )
        .bind(ms(self.clock.now()))
        .fetch_optional(&mut *writing)
        .await?;
        row.as_ref().map(sync_job_row).transpose()
    }

    async fn update_sync_job(&self, id: &str, status: &str, total: u64, done: u64, error: Option<&str>) -> StoreResult<()> {
        let mut writing = self.writing().await?;
        sqlx::query("UPDATE sync_jobs SET status = $2, total = $3, done = $4, error = $5, updated_at = $6 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(total as i64)
            .bind(done as i64)
            .bind(error)
            .bind(ms(self.clock.now()))
            .execute(&mut *writing)
            .await?;
        Ok(())
    }

    async fn requeue_stalled_sync_jobs(&self, stalled_before: Timestamp) -> StoreResult<u64> {
        let mut writing = self.writing().await?;
        let r = sqlx::query("UPDATE sync_jobs SET status = 'queued' WHERE status = 'running' AND updated_at < $1")
            .bind(ms(stalled_before))
            .execute(&mut *writing)
            .await?;
        Ok(r.rows_affected())
    }

    async fn sync_job(&self, id: &str) -> StoreResult<Option<SyncJob>> {
        let row = sqlx::query("SELECT * FROM sync_jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(sync_job_row).transpose()
    }

    async fn list_sync_jobs(&self, organization_id: &str, page: &Page) -> StoreResult<Vec<SyncJob>> {
        let rows = sqlx::query("SELECT * FROM sync_jobs WHERE organization_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .bind(organization_id)
            .bind(cursor(page, true))
            .bind(page.limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sync_job_row).collect()
    }

    async fn connection_user_count(&self, connection_id: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(&self.queries.connection_user_count).bind(connection_id).fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    async fn resync_connection_users(
        &self,
        connection_id: &str,
        after: &str,
        limit: u32,
        actor: &Actor,
    ) -> StoreResult<Option<(String, u64)>> {
        let mut tx = self.write_tx().await?;
        let organization_id: String = sqlx::query_scalar("SELECT organization_id FROM connections WHERE id = $1")
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("connection"))?;
        let page: Vec<String> = sqlx::query_scalar(&self.queries.users_of_connection)
            .bind(connection_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = page.last().cloned() else { return Ok(None) };
        // Held, then read again: a user deleted since the page was read (PostgreSQL;
        // SQLite's write transaction holds every row) has nothing left to sync.
        let ids: Vec<&str> = page.iter().map(String::as_str).collect();
        self.hold_rows(&mut tx, "users", &ids).await?;
        let sql = format!("SELECT id FROM users WHERE id IN ({})", param_list(1, ids.len()));
        let live: Vec<String> = ids.iter().fold(sqlx::query_scalar(&sql), |q, id| q.bind(*id)).fetch_all(&mut *tx).await?;
        self.sync_stored_groups_in(&mut tx, connection_id, &organization_id, &live, actor).await?;
        tx.commit().await?;
        Ok(Some((last, live.len() as u64)))
    }

    async fn session(&self, id_hash: &SessionHandle) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1").bind(id_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(|r| self.session_row(r)).transpose()
    }

    async fn touch_session(&self, id_hash: &SessionHandle, at: Timestamp, idle_until: Timestamp) -> StoreResult<Option<Session>> {
        let mut writing = self.writing().await?;
        let row = sqlx::query(
            "UPDATE sessions SET last_active_at = $2, idle_expires_at = $3 \
             WHERE id_hash = $1 AND expires_at > $2 AND idle_expires_at > $2 RETURNING *",
        )
        .bind(id_hash)
        .bind(ms(at))
        .bind(ms(idle_until))
        .fetch_optional(&mut *writing)
        .await?;
        row.as_ref().map(|r| self.session_row(r)).transpose()
    }

    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(SESSIONS_OF_USER).bind(user_id).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.session_row(r)).collect()
    }

    async fn end_sessions(&self, filter: SessionFilter<'_>, reason: &str, actor: &Actor) -> StoreResult<Vec<EndedSession>> {
        let (condition, binds): (&str, Vec<Option<&str>>) = match filter {
            SessionFilter::Handle(hash) => ("id_hash = $1", vec![Some(hash.as_str())]),
            SessionFilter::Id { user_id, id } => ("user_id = $1 AND id = $2", vec![Some(user_id), Some(id)]),
            SessionFilter::User(user_id) => ("user_id = $1", vec![Some(user_id)]),
            SessionFilter::Idp { connection_id, sub, sid } => (
                "connection_id = $1 AND ($2 IS NULL OR idp_sub = $2) AND ($3 IS NULL OR idp_sid = $3) AND ($2 IS NOT NULL OR $3 IS NOT NULL)",
                vec![Some(connection_id), sub, sid],
            ),
            SessionFilter::IdpSubjectWithoutSid { connection_id, sub } => {
                ("connection_id = $1 AND idp_sub = $2 AND idp_sid IS NULL", vec![Some(connection_id), Some(sub)])
            }
            SessionFilter::Connection(connection_id) => ("connection_id = $1", vec![Some(connection_id)]),
            SessionFilter::Organization(organization_id) => ("organization_id = $1", vec![Some(organization_id)]),
            SessionFilter::InactiveUsers => ("user_id IN (SELECT id FROM users WHERE active = 0)", vec![]),
        };
        let sql = format!("SELECT * FROM sessions WHERE {condition}{}", self.dialect.for_update());
        let mut tx = self.write_tx().await?;
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        let mut ended = vec![];
        for row in &rows {
            let session = self.session_row(row)?;
            let revoked: Vec<(Option<String>, String)> =
                sqlx::query_as("UPDATE grants SET revoked = 1 WHERE session_hash = $1 RETURNING token_hash, application_id")
                    .bind(&session.id_hash)
                    .fetch_all(&mut *tx)
                    .await?;
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(&session.id_hash).execute(&mut *tx).await?;
            let mut application_ids: Vec<String> = revoked.iter().map(|(_, app)| app.clone()).collect();
            application_ids.sort();
            application_ids.dedup();
            record(
                &mut tx,
                self.clock.now(),
                Some(&session.organization_id),
                actor,
                "session.ended",
                ("user", &session.user_id),
                serde_json::json!({"session_id": session.id, "reason": reason, "applications": application_ids}),
            );
            let data = serde_json::json!({"id": session.id, "user_id": session.user_id, "organization_id": session.organization_id, "reason": reason});
            emit(&mut tx, self.clock.now(), Some(&session.organization_id), EventType::SessionEnded, data);
            ended.push(EndedSession {
                revoked_token_hashes: revoked.into_iter().filter_map(|(token, _)| token).collect(),
                application_ids,
                session,
            });
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn session_has_signed_in(&self, session_hash: &SessionHandle, application_id: &str) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM grants WHERE session_hash = $1 AND application_id = $2 LIMIT 1")
            .bind(session_hash)
            .bind(application_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn adopt_grants(&self, old_hash: &SessionHandle, new: &Session) -> StoreResult<()> {
        let mut writing = self.writing().await?;
        sqlx::query("UPDATE grants SET session_hash = $2, session_id = $3 WHERE session_hash = $1 AND user_id = $4 AND revoked = 0")
            .bind(old_hash)
            .bind(&new.id_hash)
            .bind(&new.id)
            .bind(&new.user_id)
            .execute(&mut *writing)
            .await?;
        Ok(())
    }

    async fn claim_due_refreshes(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<Session>> {
        let sql = claim_due_refreshes(self.dialect);
        let mut writing = self.writing().await?;
        let rows = sqlx::query(&sql).bind(ms(now)).bind(ms(lease_until)).bind(i64::from(limit)).fetch_all(&mut *writing).await?;
        rows.iter().map(|r| self.session_row(r)).collect()
    }

    async fn save_refreshed(
        &self,
        id_hash: &SessionHandle,
        lease: Timestamp,
        tokens: &UpstreamTokens,
        due_at: Option<Timestamp>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let Some(id) =
            sqlx::query_scalar::<_, String>("SELECT id FROM sessions WHERE id_hash = $1").bind(id_hash).fetch_optional(&self.pool).await?
        else {
            return Ok(false);
        };
        let sealed = self.seal_upstream(&id, tokens)?;
        let mut writing = self.writing().await?;
        let r = sqlx::query(
            "UPDATE sessions SET upstream_enc = $2, refresh_at = $3, refreshed_at = $4, refresh_claimed_until = NULL, \
             refresh_failing_since = NULL, refresh_error = NULL WHERE id_hash = $1 AND refresh_claimed_until = $5",
        )
        .bind(id_hash)
        .bind(sealed)
        .bind(due_at.map(ms))
        .bind(ms(at))
        .bind(ms(lease))
        .execute(&mut *writing)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn save_upstream_tokens(
        &self,
        session_id: &str,
        id_hash: &SessionHandle,
        lease: Timestamp,
        tokens: &UpstreamTokens,
    ) -> StoreResult<bool> {
        let sealed = self.seal_upstream(session_id, tokens)?;
        let mut writing = self.writing().await?;
        let r = sqlx::query("UPDATE sessions SET upstream_enc = $2 WHERE id_hash = $1 AND refresh_claimed_until = $3")
            .bind(id_hash)
            .bind(sealed)
            .bind(ms(lease))
            .execute(&mut *writing)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn save_refresh_failure(
        &self,
        id_hash: &SessionHandle,
        lease: Timestamp,
        failing_since: Timestamp,
        retry_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        let mut writing = self.writing().await?;
        let r = sqlx::query(
            "UPDATE sessions SET refresh_at = $2, refresh_failing_since = $3, refresh_error = $4, refresh_claimed_until = NULL \
             WHERE id_hash = $1 AND refresh_claimed_until = $5",
        )
        .bind(id_hash)
        .bind(ms(retry_at))
        .bind(ms(failing_since))
        .bind(error)
        .bind(ms(lease))
        .execute(&mut *writing)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn holds_refresh_lease(&self, id_hash: &SessionHandle, lease: Timestamp) -> StoreResult<bool> {
        let held = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions WHERE id_hash = $1 AND refresh_claimed_until = $2")
            .bind(id_hash)
            .bind(ms(lease))
            .fetch_one(&self.pool)
            .await?;
        Ok(held == 1)
    }

    async fn refresh_user_profile(&self, c: &Connection, p: &IdpProfile, at: Timestamp) -> StoreResult<Option<UserView>> {
        let mut writing = self.writing().await?;
        let row =
            refresh_profile(&self.queries.refresh_by_subject, c, p, at, &c.organization_id, false).fetch_optional(&mut *writing).await?;
        row.as_ref().map(user_view_row).transpose()
    }

    async fn reissue_grant_claims(
        &self,
        session_hash: &SessionHandle,
        claims_for_scope: &(dyn for<'s> Fn(&'s str) -> Value + Sync),
    ) -> StoreResult<Vec<String>> {
        let t = ms(self.clock.now());
        let live: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT code_hash, scope, token_hash FROM grants WHERE session_hash = $1 AND revoked = 0 \
             AND (token_expires_at > $2 OR (redeemed_at IS NULL AND code_expires_at > $2))",
        )
        .bind(session_hash)
        .bind(t)
        .fetch_all(&self.pool)
        .await?;
        let mut tx = self.write_tx().await?;
        for (code_hash, scope, _) in &live {
            sqlx::query("UPDATE grants SET claims = $2 WHERE code_hash = $1")
                .bind(code_hash)
                .bind(to_json(&claims_for_scope(scope)))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(live.into_iter().filter_map(|(_, _, token)| token).collect())
    }

    async fn use_once(&self, hash: &str, expires_at: Timestamp) -> StoreResult<bool> {
        let mut writing = self.writing().await?;
        let r = sqlx::query("INSERT INTO used_login_states (state_hash, expires_at) VALUES ($1, $2) ON CONFLICT (state_hash) DO NOTHING")
            .bind(hash)
            .bind(ms(expires_at))
            .execute(&mut *writing)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn is_used(&self, hash: &str) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM used_login_states WHERE state_hash = $1").bind(hash).fetch_optional(&self.pool).await?;
        Ok(found.is_some())
    }

    async fn create_grant(&self, g: &Grant, sign_in: Option<SignIn<'_>>) -> StoreResult<()> {
        let sql = grant_sql(sign_in.is_some(), self.dialect);
        let mut q = sqlx::query(&sql)
            .bind(&g.code_hash)
            .bind(&g.application_id)
            .bind(&g.redirect_uri)
            .bind(&g.user_id)
            .bind(&g.session_hash)
            .bind(&g.scope)
            .bind(&g.nonce)
            .bind(&g.code_challenge)
            .bind(ms(g.auth_time))
            .bind(to_json(&g.claims))
            .bind(ms(g.code_expires_at))
            .bind(&g.session_id);
        if let Some(SignIn { session: s, state_hash, state_expires_at }) = sign_in {
            let sealed = s.upstream.as_ref().map(|u| self.seal_upstream(&s.id, u)).transpose()?;
            q = q
                .bind(&s.id_hash)
                .bind(&s.user_id)
                .bind(&s.organization_id)
                .bind(&s.connection_id)
                .bind(ms(s.auth_time))
                .bind(ms(s.created_at))
                .bind(ms(s.expires_at))
                .bind(&s.id)
                .bind(ms(s.idle_expires_at))
                .bind(ms(s.last_active_at))
                .bind(&s.idp_sub)
                .bind(&s.idp_sid)
                .bind(sealed)
                .bind(s.refresh.due_at.map(ms))
                .bind(state_hash)
                .bind(ms(state_expires_at));
        }
        match self.dialect {
            // One transaction for the three statements, so none lands without the others.
            Dialect::Sqlite => {
                let mut tx = self.write_tx().await?;
                q.execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Dialect::Postgres => {
                q.execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    async fn redeem_grant(&self, code_hash: &str, tokens: FirstTokens<'_>, now: Timestamp) -> StoreResult<Redemption> {
        // One atomic statement marks the code used, records the token, and reads the
        // session's expiry; a refresh token goes in the same transaction.
        let mut tx = self.write_tx().await?;
        let fresh = sqlx::query(REDEEM_GRANT)
            .bind(code_hash)
            .bind(ms(now))
            .bind(tokens.access_hash)
            .bind(ms(tokens.access_expires_at))
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = fresh {
            let session_expires_at = row.try_get::<Option<i64>, _>("session_expires_at")?.map(from_ms).transpose()?;
            let grant = grant_row(&row)?;
            if grants_refresh_token(&grant.scope) {
                insert_refresh_token(&mut tx, tokens.refresh_hash, code_hash, now).await?;
                sqlx::query("UPDATE grants SET refreshable = 1 WHERE code_hash = $1").bind(code_hash).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            return Ok(Redemption::Fresh(Box::new(grant), session_expires_at));
        }
        let revoked = revoke_family(&mut tx, code_hash).await?;
        tx.commit().await?;
        match revoked {
            None => Ok(Redemption::Unknown),
            Some(revoked_token_hashes) => Ok(Redemption::Replayed { revoked_token_hashes }),
        }
    }

    async fn grant(&self, code_hash: &str) -> StoreResult<Option<Grant>> {
        let row = sqlx::query("SELECT * FROM grants WHERE code_hash = $1").bind(code_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(grant_row).transpose()
    }

    async fn issued_token(&self, token_hash: &str) -> StoreResult<Option<IssuedToken>> {
        let row = sqlx::query(
            "SELECT g.claims, g.token_issued_at, g.redeemed_at, g.token_expires_at, g.revoked, g.application_id, g.code_hash, \
             g.session_hash, g.session_id, COALESCE(g.token_scope, g.scope) AS scope, a.client_id, \
             COALESCE(a.access_token_audience, a.client_id) AS audience \
             FROM grants g JOIN applications a ON a.id = g.application_id WHERE g.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            // Tokens issued before token_issued_at existed were issued at redemption.
            let issued_at = r.try_get::<Option<i64>, _>("token_issued_at")?.or(r.try_get("redeemed_at")?).unwrap_or_default();
            Ok(IssuedToken {
                claims: from_json(&r.try_get::<String, _>("claims")?)?,
                application_id: r.try_get("application_id")?,
                code_hash: r.try_get("code_hash")?,
                client_id: r.try_get("client_id")?,
                audience: r.try_get("audience")?,
                session_hash: r.try_get("session_hash")?,
                session_id: r.try_get::<Option<String>, _>("session_id")?.unwrap_or_default(),
                scope: r.try_get("scope")?,
                issued_at: from_ms(issued_at)?,
                expires_at: from_ms(r.try_get("token_expires_at")?)?,
                revoked: super::flag(&r, "revoked")?,
            })
        })
        .transpose()
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row =
            sqlx::query("SELECT g.*, r.spent_at FROM refresh_tokens r JOIN grants g ON g.code_hash = r.code_hash WHERE r.token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(RefreshToken {
                grant: grant_row(&r)?,
                spent: r.try_get::<Option<i64>, _>("spent_at")?.is_some(),
                revoked: super::flag(&r, "revoked")?,
            })
        })
        .transpose()
    }

    async fn rotate_refresh_token(&self, spent_hash: &str, next: NextTokens<'_>) -> StoreResult<Rotation> {
        let mut tx = self.write_tx().await?;
        let family: Option<String> = sqlx::query_scalar("SELECT code_hash FROM refresh_tokens WHERE token_hash = $1")
            .bind(spent_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(code_hash) = family else {
            drop(tx);
            return Ok(Rotation::Reused { revoked_token_hashes: vec![] });
        };
        // The grant first, then its refresh token: the order the purge's cascade
        // takes them in, so the two cannot deadlock on PostgreSQL.
        let live: Option<Option<String>> =
            sqlx::query_scalar(&format!("SELECT token_hash FROM grants WHERE code_hash = $1 AND revoked = 0{}", self.dialect.for_update()))
                .bind(&code_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(replaced_token_hash) = live else {
            drop(tx);
            return Ok(Rotation::Revoked);
        };
        let spent = sqlx::query("UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL")
            .bind(spent_hash)
            .bind(ms(next.at))
            .execute(&mut *tx)
            .await?;
        if spent.rows_affected() == 0 {
            let revoked = revoke_family(&mut tx, &code_hash).await?.unwrap_or_default();
            tx.commit().await?;
            return Ok(Rotation::Reused { revoked_token_hashes: revoked });
        }
        sqlx::query(
            "UPDATE grants SET token_hash = $2, token_expires_at = $3, token_issued_at = $4, claims = $5, token_scope = $6 \
             WHERE code_hash = $1",
        )
        .bind(&code_hash)
        .bind(next.access_hash)
        .bind(ms(next.access_expires_at))
        .bind(ms(next.at))
        .bind(to_json(next.claims))
        .bind(next.scope)
        .execute(&mut *tx)
        .await?;
        insert_refresh_token(&mut tx, next.refresh_hash, &code_hash, next.at).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated { replaced_token_hash })
    }

    async fn revoke_tokens(&self, which: RevokedTokens) -> StoreResult<Vec<String>> {
        let mut writing = self.writing().await?;
        match which {
            RevokedTokens::Family(code_hash) => Ok(revoke_family(&mut writing, &code_hash).await?.unwrap_or_default()),
            RevokedTokens::AccessToken(token_hash) => {
                let r = sqlx::query("UPDATE grants SET token_hash = NULL WHERE token_hash = $1")
                    .bind(&token_hash)
                    .execute(&mut *writing)
                    .await?;
                Ok(if r.rows_affected() > 0 { vec![token_hash] } else { vec![] })
            }
        }
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        const EVENT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
        let mut n = 0;
        // Grants are kept a while past expiry so a late replay is still recognised
        // (an expired token is refused by its expiry meanwhile).
        let code_grace_ms = 10 * 60 * 1000;
        for (sql, bound) in [
            ("DELETE FROM used_login_states WHERE expires_at < $1", ms(now)),
            (
                // A live refresh token keeps its family (it is revoked when its session ends).
                "DELETE FROM grants WHERE code_expires_at < $1 AND (token_expires_at IS NULL OR token_expires_at < $1) \
                 AND (refreshable = 0 OR revoked = 1)",
                ms(now) - code_grace_ms,
            ),
            // A lapsed session's tokens end with it.
            (
                "UPDATE grants SET revoked = 1 WHERE revoked = 0 AND session_hash IN \
                 (SELECT id_hash FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1)",
                ms(now),
            ),
            // A refresh family whose session is gone without ending it (removed with its
            // connection, say) ends too, so that the purge above takes it.
            (
                "UPDATE grants SET revoked = 1 WHERE refreshable = 1 AND revoked = 0 AND code_expires_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id_hash = grants.session_hash)",
                ms(now),
            ),
            ("DELETE FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1", ms(now)),
            // Events are kept for polling and redelivery for 30 days (their
            // deliveries go with them).
            ("DELETE FROM events WHERE created_at < $1", ms(now) - EVENT_RETENTION_MS),
        ] {
            // The writer is taken for each statement, so writes queued meanwhile go
            // between them.
            let mut writing = self.writing().await?;
            n += sqlx::query(sql).bind(bound).execute(&mut *writing).await?.rows_affected();
        }
        Ok(n)
    }
}

async fn insert_refresh_token(conn: &mut AnyConnection, token_hash: &str, code_hash: &str, at: Timestamp) -> StoreResult<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, code_hash, issued_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind(code_hash)
        .bind(ms(at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes a grant and so every token of its family; `None` if there is no such grant.
async fn revoke_family(conn: &mut AnyConnection, code_hash: &str) -> StoreResult<Option<Vec<String>>> {
    let revoked: Vec<Option<String>> = sqlx::query_scalar("UPDATE grants SET revoked = 1 WHERE code_hash = $1 RETURNING token_hash")
        .bind(code_hash)
        .fetch_all(conn)
        .await?;
    Ok((!revoked.is_empty()).then(|| revoked.into_iter().flatten().collect()))
}

/// Queues a re-sync job for each connection of the organization (or the one named)
/// that syncs groups and has none queued yet, inside `conn`'s transaction.
pub(super) async fn enqueue_sync_jobs_in(
    conn: &mut AnyConnection,
    organization_id: &str,
    connection_id: Option<&str>,
    reason: &str,
    at: Timestamp,
) -> StoreResult<Vec<SyncJob>> {
    let rows = sqlx::query("SELECT id, group_sync FROM connections WHERE organization_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY id")
        .bind(organization_id)
        .bind(connection_id)
        .fetch_all(&mut *conn)
        .await?;
    let t = ms(at);
    let mut queued = vec![];
    for r in rows {
        let conn_id: String = r.try_get("id")?;
        let sync: GroupSync = from_json(&r.try_get::<String, _>("group_sync")?)?;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_jobs WHERE connection_id = $1 AND status = 'queued'")
            .bind(&conn_id)
            .fetch_one(&mut *conn)
            .await?;
        if !sync.enabled || pending > 0 {
            continue;
        }
        let row = sqlx::query(
            "INSERT INTO sync_jobs (id, organization_id, connection_id, reason, status, total, done, error, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', 0, 0, NULL, $5, $5) RETURNING *",
        )
        .bind(new_id(IdKind::Job))
        .bind(organization_id)
        .bind(&conn_id)
        .bind(reason)
        .bind(t)
        .fetch_one(&mut *conn)
        .await?;
        queued.push(sync_job_row(&row)?);
    }
    Ok(queued)
}
