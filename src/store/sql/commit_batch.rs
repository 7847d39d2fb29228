//! Rows a write adds that nothing later in its transaction reads (audit entries,
//! events and their deliveries, a new user's rows), sent with the commit as one
//! batch.
//!
//! Since nothing reads them back before the commit, they can wait for it. On SQLite the batch is one multi-statement execute: sqlx steps every
//! SQLite statement on the connection's worker thread, and each hand-off there and
//! back costs two context switches, the largest single cost of a small write. On
//! PostgreSQL the statements are sent one after another, as before.

use sqlx::AnyConnection;

use super::Dialect;

/// A value bound to a batched statement.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Param {
    Text(Option<String>),
    Int(i64),
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_owned()))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}

impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::Text(v.map(str::to_owned))
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

/// Most statements, and most bound values, one SQLite execute carries (SQLite
/// numbers parameters up to 32,766). Each joined text is one entry of sqlx's
/// statement cache: a write's batches take a few shapes (a user's rows, audit,
/// events), the cap bounds the rest.
const MAX_STATEMENTS: usize = 32;
const MAX_PARAMS: usize = 4_000;

/// A statement's text, often a constant.
pub(super) type Sql = std::borrow::Cow<'static, str>;

#[derive(Default)]
pub(super) struct CommitBatch {
    statements: Vec<(Sql, Vec<Param>)>,
    /// Run after every statement of `statements`, whenever queued.
    last: Vec<(Sql, Vec<Param>)>,
}

impl CommitBatch {
    /// Queues a statement whose parameters are `$1`, `$2`, … in `params` order.
    pub(super) fn push(&mut self, sql: impl Into<Sql>, params: Vec<Param>) {
        self.statements.push(checked(sql.into(), params));
    }

    /// Queues a statement to run after all those [`push`](Self::push)ed, in order
    /// among its kind (a table lock taken there holds no other statement waiting).
    pub(super) fn push_last(&mut self, sql: impl Into<Sql>, params: Vec<Param>) {
        self.last.push(checked(sql.into(), params));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.statements.is_empty() && self.last.is_empty()
    }

    /// Runs the queued statements in order, stopping at the first that fails.
    pub(super) async fn send(mut self, conn: &mut AnyConnection, dialect: Dialect) -> Result<(), sqlx::Error> {
        self.statements.append(&mut self.last);
        match dialect {
            Dialect::Postgres => {
                for (sql, params) in &self.statements {
                    bound(sqlx::query(sql), params).execute(&mut *conn).await?;
                }
            }
            Dialect::Sqlite => {
                for (sql, params) in chunks(&self.statements) {
                    bound(sqlx::query(&sql), &params).execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }
}

/// [`renumbered`] reads `$n` parameters and `'…'` literals only: no comments,
/// quoted identifiers or `?` parameters in batched statements.
fn checked(sql: Sql, params: Vec<Param>) -> (Sql, Vec<Param>) {
    debug_assert!(!sql.contains("--") && !sql.contains("/*") && !sql.contains('"') && !sql.contains('?'), "not batchable: {sql}");
    (sql, params)
}

/// The query with `params` bound in order.
pub(super) fn bound<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: &[Param],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        q = match p {
            Param::Text(v) => q.bind(v.clone()),
            Param::Int(v) => q.bind(*v),
        };
    }
    q
}

/// The statements joined into multi-statement texts, each statement's `$n`
/// renumbered after the parameters of those before it in its text.
fn chunks(statements: &[(Sql, Vec<Param>)]) -> Vec<(String, Vec<Param>)> {
    let mut out: Vec<(String, Vec<Param>)> = vec![];
    let mut count = 0;
    for (sql, params) in statements {
        match out.last_mut() {
            Some((text, all)) if count < MAX_STATEMENTS && all.len() + params.len() <= MAX_PARAMS => {
                text.push_str(";\n");
                text.push_str(&renumbered(sql, all.len()));
                all.extend(params.iter().cloned());
                count += 1;
            }
            _ => {
                out.push((sql.to_string(), params.clone()));
                count = 1;
            }
        }
    }
    out
}

/// `sql` with every parameter `$n` outside a string literal made `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\'' {
            quoted = !quoted;
        } else if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_outside_string_literals() {
        assert_eq!(renumbered("INSERT INTO t VALUES ($1, $2, '$1', $10)", 3), "INSERT INTO t VALUES ($4, $5, '$1', $13)");
        assert_eq!(renumbered("SELECT $1 || ':' || id", 0), "SELECT $1 || ':' || id");
        assert_eq!(renumbered("SELECT '$' || $2", 7), "SELECT '$' || $9");
    }

    #[test]
    fn statements_join_into_texts_with_their_parameters_in_order() {
        let s: Vec<(Sql, Vec<Param>)> = vec![
            ("INSERT INTO a VALUES ($1, $2)".into(), vec![Param::from("x"), Param::Int(1)]),
            ("INSERT INTO b VALUES ($2, $1)".into(), vec![Param::from("y"), Param::Int(2)]),
        ];
        let joined = chunks(&s);
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].0, "INSERT INTO a VALUES ($1, $2);\nINSERT INTO b VALUES ($4, $3)");
        assert_eq!(joined[0].1, vec![Param::from("x"), Param::Int(1), Param::from("y"), Param::Int(2)]);
    }

    #[tokio::test]
    async fn a_batch_runs_in_order_and_stops_at_the_first_failure() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT)").execute(&mut conn).await.unwrap();
        let mut batch = CommitBatch::default();
        batch.push_last("INSERT INTO t VALUES ($1, (SELECT COUNT(*) FROM t))", vec!["last".into()]);
        batch.push("INSERT INTO t VALUES ($1, $2)", vec!["a".into(), Param::Int(7)]);
        batch.push("INSERT INTO t VALUES ($2, $1)", vec![Param::Int(8), "b'$1".into()]);
        batch.send(&mut conn, Dialect::Sqlite).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, n FROM t ORDER BY rowid").fetch_all(&mut conn).await.unwrap();
        assert_eq!(rows, vec![("a".into(), 7), ("b'$1".into(), 8), ("last".into(), 2)]);

        let mut failing = CommitBatch::default();
        failing.push("INSERT INTO t VALUES ($1, 0)", vec!["a".into()]);
        failing.push("INSERT INTO t VALUES ($1, 0)", vec!["after".into()]);
        assert!(failing.send(&mut conn, Dialect::Sqlite).await.is_err());
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE id = 'after'").fetch_one(&mut conn).await.unwrap();
        assert_eq!(after, 0, "nothing runs after the statement that failed");
    }

    #[test]
    fn long_batches_split_by_statements_and_parameters() {
        let many: Vec<(Sql, Vec<Param>)> = (0..MAX_STATEMENTS + 1).map(|i| ("SELECT $1".into(), vec![Param::Int(i as i64)])).collect();
        assert_eq!(chunks(&many).len(), 2);
        let wide: Vec<(Sql, Vec<Param>)> =
            vec![("SELECT 1".into(), vec![Param::Int(0); MAX_PARAMS]), ("SELECT $1".into(), vec![Param::Int(1)])];
        let split = chunks(&wide);
        assert_eq!(split.len(), 2);
        assert_eq!(split[1].0, "SELECT $1", "a new text numbers from 1");
    }
}
