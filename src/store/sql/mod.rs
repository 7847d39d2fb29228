//! The SQL store, one implementation for SQLite and PostgreSQL through sqlx's `Any`
//! driver: the queries are written in the dialect both share (`$n` parameters,
//! `ON CONFLICT`, `RETURNING`), and [`Dialect`] covers the few places they differ.

mod changes;
mod commit_batch;
mod directory;
mod directory_sync;
mod group_commit;
mod group_sync;
mod logins;
mod webhooks;

#[doc(hidden)]
pub use logins::sign_in_statements;

use directory::{audit_page, organization_page, APPLICATIONS_PAGE, ORGANIZATIONS_PAGE, ORGANIZATIONS_PAGE_DOMAINS};
use logins::{claim_due_refreshes, SESSIONS_OF_USER};

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor, Row};

use super::{EventFilter, Page, StoreError, StoreResult};
use crate::core::audit::Actor;
use crate::core::clock::{Clock, SystemClock};
use crate::core::ids::{new_id, IdKind};
use crate::core::Timestamp;
use crate::crypto::SecretBox;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    /// A correlated subquery giving a user's groups as JSON
    /// `[[name, is_default, permissions_json, source], …]`, so a user and their groups come
    /// back in one statement (the aggregate is the one thing the dialects spell apart).
    fn memberships(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(SELECT json_group_array(json_array(g.name, g.is_default, g.permissions, m.source)) \
                 FROM group_memberships m JOIN groups g ON g.id = m.group_id WHERE m.user_id = users.id)"
            }
            Dialect::Postgres => {
                "(SELECT COALESCE(json_agg(json_build_array(g.name, g.is_default, g.permissions, m.source))::text, '[]') \
                 FROM group_memberships m JOIN groups g ON g.id = m.group_id WHERE m.user_id = users.id)"
            }
        }
    }

    /// Row locking for a read inside a write transaction. SQLite's write transactions
    /// are already serialized (BEGIN IMMEDIATE); PostgreSQL needs the row lock.
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

pub struct SqlStore {
    pool: AnyPool,
    /// Where write transactions run: on SQLite one connection of its own, held by
    /// [`group_commit::Writer`]; on PostgreSQL the pool itself.
    write_pool: AnyPool,
    dialect: Dialect,
    secrets: Arc<SecretBox>,
    queries: Queries,
    /// For the change listener's own connection.
    url: String,
    /// This process among the replicas: the origin of its change messages and the
    /// holder of its leases.
    instance: String,
    /// The time of every row written (tests hold and move it).
    clock: Arc<dyn Clock>,
    /// SQLite writers queue here for their turn (see [`Tx`]).
    writer: group_commit::Writer,
    /// Run after each committed configuration change (see [`Changes::on_change`]).
    on_change: std::sync::OnceLock<crate::store::OnChange>,
}

/// What every SQLite connection is set to: WAL with `synchronous = NORMAL` (a commit
/// survives a crash of ssogate; see docs/performance.md on durability), and checkpoints
/// every 8,000 pages rather than 1,000.
#[doc(hidden)] // also for the login benchmark's floor
pub const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 8000;";

/// Statements whose text depends on the dialect, built once.
struct Queries {
    user_by_id: String,
    users_of_org: String,
    users_of_connection: String,
    connection_user_count: String,
    refresh_by_id: String,
    refresh_by_subject: String,
}

/// The statements behind the admin API's lists and the refresh sweep, named, for the
/// scale benchmark to show their query plans on a full database. Binds: users and
/// groups (organization, cursor, limit), organizations and applications (cursor,
/// limit), audit log (organization, then the target or action if named, cursor,
/// limit), sessions (user), due refreshes (now, lease end, limit), users of a
/// connection (connection, cursor, limit).
#[doc(hidden)]
pub fn list_statements(dialect: Dialect) -> Vec<(&'static str, String)> {
    let audit = |action: Option<&str>, target: Option<&str>| {
        let named = |v: Option<&str>| v.map(str::to_owned);
        let filter = EventFilter { organization_id: Some(String::new()), action: named(action), target_id: named(target) };
        audit_page(&filter).0
    };
    vec![
        ("users of an organization", Queries::new(dialect).users_of_org),
        ("groups of an organization", organization_page("groups")),
        ("organizations", ORGANIZATIONS_PAGE.to_owned()),
        ("domains of a page of organizations", ORGANIZATIONS_PAGE_DOMAINS.to_owned()),
        ("applications", APPLICATIONS_PAGE.to_owned()),
        ("audit log", audit(None, None)),
        ("audit log, one target's entries", audit(None, Some(""))),
        ("audit log, one action's entries", audit(Some(""), None)),
        ("sessions of a user", SESSIONS_OF_USER.to_owned()),
        ("due refreshes", claim_due_refreshes(dialect)),
        ("users of a connection (re-sync)", Queries::new(dialect).users_of_connection),
    ]
}

/// Refreshes a user's profile from the IdP and returns the row with its groups. The
/// IdP is the source of truth, but a claim it stopped sending keeps its last value
/// rather than erasing what an admin may have set. `$11` is the selector's key; `$12`
/// is 1 for a sign-in (which sets the last login time), 0 for a background refresh.
const REFRESH_PROFILE: &str = "UPDATE users SET connection_id = $1, idp_sub = $2, email = COALESCE($3, email), \
     email_verified = CASE WHEN $3 IS NULL THEN email_verified ELSE $4 END, first_name = COALESCE($5, first_name), \
     last_name = COALESCE($6, last_name), username = COALESCE($7, username), picture = COALESCE($8, picture), \
     attributes = $9, last_login_at = CASE WHEN $12 = 1 THEN $10 ELSE last_login_at END, updated_at = $10 WHERE ";

/// The users a connection's group sync covers (binds: the connection): those who last
/// signed in through it, and those of its directories (who may have signed in
/// elsewhere, or never). Queried as a union of the two, each on its index:
/// `connection_id = $1 OR id IN (…)` would read every user.
const SIGNED_IN_THROUGH: &str = "SELECT id FROM users WHERE connection_id = $1";
const PUSHED_BY_DIRECTORIES_OF: &str =
    "SELECT du.user_id FROM directory_users du JOIN directories d ON d.id = du.directory_id WHERE d.connection_id = $1";

impl Queries {
    fn new(d: Dialect) -> Self {
        let m = d.memberships();
        Queries {
            user_by_id: format!("SELECT users.*, {m} AS memberships FROM users WHERE id = $1"),
            users_of_org: format!(
                "SELECT users.*, {m} AS memberships FROM users WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ),
            // Each side takes its own page first, so a page reads no more than two.
            users_of_connection: format!(
                "SELECT id FROM ({SIGNED_IN_THROUGH} AND id > $2 ORDER BY id LIMIT $3) signed_in UNION \
                 SELECT user_id FROM ({PUSHED_BY_DIRECTORIES_OF} AND du.user_id > $2 ORDER BY du.user_id LIMIT $3) pushed \
                 ORDER BY 1 LIMIT $3"
            ),
            connection_user_count: format!("SELECT COUNT(*) FROM ({SIGNED_IN_THROUGH} UNION {PUSHED_BY_DIRECTORIES_OF}) covered"),
            refresh_by_id: format!("{REFRESH_PROFILE}id = $11 RETURNING *, {m} AS memberships"),
            // The user this IdP subject signed in as before through this connection, in
            // its organization ($11), if still active. A first sign-in (or a
            // deactivated user) takes the slower, audited path.
            refresh_by_subject: format!(
                "{REFRESH_PROFILE}id = (SELECT id FROM users WHERE organization_id = $11 AND idp_sub = $2 \
                 AND connection_id = $1 AND active = 1) RETURNING *, {m} AS memberships"
            ),
        }
    }
}

/// How the connection pool behaves; see `ssogate serve --help`.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Default: 16 for PostgreSQL, 4 for SQLite.
    pub max_connections: Option<u32>,
    /// How long a request waits for a connection (including reconnecting to a
    /// database that went away) before it fails with "database unavailable".
    pub acquire_timeout: Duration,
    /// PostgreSQL: the longest a statement (or an idle transaction) may run.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings { max_connections: None, acquire_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) }
    }
}

/// A write transaction. On SQLite it is this process's turn at the one writer (a
/// savepoint in a transaction that writers queued together commit once: see
/// [`group_commit`]); SQLite's own busy handler polls with growing sleeps, so under
/// a sustained burst (an IdP's initial push) a waiting writer could lose every
/// race until its timeout, where the queue serves writers in order.
///
/// It also carries the audit entries and events the write adds ([`record`],
/// [`webhooks::emit`]): they are written last, with the commit.
pub(super) struct Tx {
    inner: Written,
    dialect: Dialect,
    appended: commit_batch::CommitBatch,
    /// Whether `appended` holds events (PostgreSQL then locks their table first).
    has_events: bool,
}

/// See [`SqlStore::writing`].
enum Writing {
    Sqlite(group_commit::Held),
    Postgres(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl std::ops::Deref for Writing {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Writing::Sqlite(held) => held,
            Writing::Postgres(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Writing::Sqlite(held) => held,
            Writing::Postgres(conn) => conn,
        }
    }
}

enum Written {
    Sqlite(group_commit::Turn),
    Postgres(sqlx::Transaction<'static, sqlx::Any>),
}

impl Tx {
    /// Queues a row-writing statement to run with the commit: only for rows nothing
    /// later in this transaction reads (see [`commit_batch`]). A constraint it
    /// breaks fails the commit.
    fn append(&mut self, sql: impl Into<commit_batch::Sql>, params: Vec<commit_batch::Param>) {
        self.appended.push(sql, params);
    }

    /// As [`append`](Self::append), run after every appended row (events: see
    /// [`webhooks::emit`]).
    fn append_last(&mut self, sql: impl Into<commit_batch::Sql>, params: Vec<commit_batch::Param>) {
        self.appended.push_last(sql, params);
    }

    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let appended = std::mem::take(&mut self.appended);
        if !appended.is_empty() {
            let dialect = self.dialect;
            appended.send(&mut self, dialect).await?;
        }
        match self.inner {
            Written::Sqlite(turn) => turn.commit().await,
            Written::Postgres(tx) => tx.commit().await,
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.inner {
            Written::Sqlite(turn) => turn.conn_ref(),
            Written::Postgres(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            Written::Sqlite(turn) => turn.conn(),
            Written::Postgres(tx) => tx,
        }
    }
}

pub(super) fn ms(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn from_ms(v: i64) -> StoreResult<Timestamp> {
    Timestamp::from_unix_timestamp_nanos(v as i128 * 1_000_000).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Flags are stored as 0/1 in both databases.
pub(super) fn flag(r: &AnyRow, column: &str) -> StoreResult<bool> {
    Ok(r.try_get::<i64, _>(column)? != 0)
}

#[expect(clippy::expect_used, reason = "serde_json fails only on maps with non-string keys, which no stored type has")]
pub(super) fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

pub(super) fn from_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A unit enum as its bare serde name, as its column holds it (`confidential`).
pub(super) fn enum_text<T: Serialize>(v: &T) -> String {
    to_json(v).trim_matches('"').to_owned()
}

pub(super) fn enum_from_text<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    from_json(&format!("\"{text}\""))
}

#[expect(clippy::expect_used, reason = "as for to_json")]
pub(super) fn json_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("plain data serialises")
}

pub(super) fn conflict(field: &str, message: impl Into<String>) -> StoreError {
    StoreError::Conflict { field: field.into(), message: message.into() }
}

pub(super) fn secret_context(connection_id: &str) -> String {
    format!("connection:{connection_id}:client_secret")
}

/// The cursor bound: rows after it going forward, before it going backward.
pub(super) fn cursor(page: &Page, newest_first: bool) -> String {
    page.cursor.clone().unwrap_or_else(|| if newest_first { "~".into() } else { String::new() })
}

impl SqlStore {
    /// Opens the database (creating a SQLite file when missing) without migrating
    /// it, with the default pool settings.
    pub async fn connect(url: &str, secrets: Arc<SecretBox>) -> StoreResult<Self> {
        Self::connect_with(url, secrets, &PoolSettings::default()).await
    }

    pub async fn connect_with(url: &str, secrets: Arc<SecretBox>, settings: &PoolSettings) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let dialect =
            Dialect::from_url(url).ok_or_else(|| StoreError::Corrupt("the database URL must start with sqlite: or postgres://".into()))?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' }),
            _ => url.to_owned(),
        };
        let max_connections = settings.max_connections.unwrap_or(match dialect {
            // One writer at a time anyway; readers share WAL snapshots.
            Dialect::Sqlite => 4,
            Dialect::Postgres => 16,
        });
        let statement_timeout_ms = settings.statement_timeout.as_millis();
        let options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A ping before every checkout doubles the cost of each statement; broken
            // connections surface as errors and are replaced anyway.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match dialect {
                        Dialect::Sqlite => {
                            conn.execute(SQLITE_SETTINGS).await?;
                        }
                        // A statement stuck on a lock or a runaway plan gives its
                        // connection back instead of holding it forever.
                        Dialect::Postgres => {
                            conn.execute(
                                format!(
                                    "SET statement_timeout = {statement_timeout_ms}; \
                                     SET idle_in_transaction_session_timeout = {statement_timeout_ms}"
                                )
                                .as_str(),
                            )
                            .await?;
                        }
                    }
                    Ok(())
                })
            });
        let pool = options.clone().connect(&url).await?;
        let write_pool = match dialect {
            // Never closed while the store runs: its warm cache is the point.
            Dialect::Sqlite => options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None).connect(&url).await?,
            Dialect::Postgres => pool.clone(),
        };
        let instance = crate::crypto::random_token("");
        Ok(SqlStore {
            pool,
            writer: group_commit::Writer::new(write_pool.clone()),
            write_pool,
            dialect,
            secrets,
            queries: Queries::new(dialect),
            url,
            instance,
            clock: Arc::new(SystemClock),
            on_change: std::sync::OnceLock::new(),
        })
    }

    /// The embedded migrations the database has not applied yet (by description).
    pub async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        let exists = match self.dialect {
            Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let applied: Vec<i64> = if sqlx::query_scalar::<_, i64>(exists).fetch_one(&self.pool).await? > 0 {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await?
        } else {
            vec![]
        };
        Ok(MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| format!("{:04}_{}", m.version, m.description))
            .collect())
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
        self.write_pool.close().await;
    }

    /// The same store on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub(super) async fn write_tx(&self) -> StoreResult<Tx> {
        let inner = match self.dialect {
            Dialect::Sqlite => Written::Sqlite(self.writer.turn().await?),
            Dialect::Postgres => Written::Postgres(self.write_pool.begin_with("BEGIN").await?),
        };
        Ok(Tx { inner, dialect: self.dialect, appended: Default::default(), has_events: false })
    }

    /// A connection for single-statement writes outside a transaction: on SQLite
    /// the writer's own, held, so the write takes its turn in the writers' queue
    /// instead of polling for the lock a group of writes holds (see
    /// [`group_commit`]); on PostgreSQL one of the pool's.
    async fn writing(&self) -> StoreResult<Writing> {
        Ok(match self.dialect {
            Dialect::Sqlite => Writing::Sqlite(self.writer.hold().await?),
            Dialect::Postgres => Writing::Postgres(self.pool.acquire().await?),
        })
    }

    /// Holds one row of `table` for the rest of a write transaction, so a
    /// read-modify-write of it cannot interleave with another (PostgreSQL; SQLite's
    /// write transaction holds the whole database already).
    pub(super) async fn hold_row(&self, tx: &mut Tx, table: &'static str, id: &str) -> StoreResult<()> {
        self.hold_rows(tx, table, &[id]).await
    }

    /// Holds rows of `table` for the rest of the write transaction: on PostgreSQL,
    /// row locks taken in id order (so two writers holding overlapping rows cannot
    /// deadlock); SQLite's write transactions are serialized already.
    pub(super) async fn hold_rows(&self, tx: &mut Tx, table: &'static str, ids: &[&str]) -> StoreResult<()> {
        if self.dialect == Dialect::Postgres && !ids.is_empty() {
            // NO KEY: the id is never changed, so rows that only reference it (a
            // membership's group) can still be inserted meanwhile.
            let sql = format!("SELECT id FROM {table} WHERE id IN ({}) ORDER BY id FOR NO KEY UPDATE", param_list(1, ids.len()));
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(super) async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.pool.acquire().await?)
    }
}

/// `$first, $first+1, …`: `n` numbered parameters, for an `IN (…)` list.
pub(super) fn param_list(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// One audit-log row, written with the commit of the change it records.
pub(super) fn record(
    tx: &mut Tx,
    at: Timestamp,
    organization_id: Option<&str>,
    actor: &Actor,
    action: &str,
    target: (&str, &str),
    changes: Value,
) {
    tx.append(
        "INSERT INTO audit_events (id, organization_id, actor, action, target_type, target_id, changes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            new_id(IdKind::Event).into(),
            organization_id.into(),
            actor.0.as_str().into(),
            action.into(),
            target.0.into(),
            target.1.into(),
            to_json(&changes).into(),
            ms(at).into(),
        ],
    );
}
