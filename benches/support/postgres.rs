//! A PostgreSQL database made for one benchmark run, on the server BENCH_POSTGRES_URL
//! names (default the local server's `test` database; `none` skips PostgreSQL).

use sqlx::Connection;

/// The database a run uses, and what it is called in the report.
pub struct Database {
    pub name: &'static str,
    /// ssogate's `SSOGATE_DATABASE_URL`; `None`: SQLite in ssogate's directory.
    pub url: Option<String>,
}

/// A PostgreSQL database made for the run, dropped when this goes (a panic included).
pub struct Made {
    admin_url: String,
    name: String,
}

/// Runs `sql` on `url` (set-up: failures panic).
async fn execute(url: &str, sql: &str) {
    let mut admin = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut admin).await.unwrap();
    admin.close().await.ok();
}

impl Drop for Made {
    fn drop(&mut self) {
        let (url, sql) = (self.admin_url.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        // Drop runs inside the runtime, which cannot be blocked on: use another.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(execute(&url, &sql))
        })
        .join()
        .ok();
    }
}

impl Made {
    /// Another database on the same server, named after this one and `suffix`, for a
    /// run that needs two at once.
    pub async fn beside(&self, suffix: &str) -> (Database, Made) {
        let name = format!("{}_{suffix}", self.name);
        execute(&self.admin_url, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&self.admin_url, &name);
        (Database { name: "PostgreSQL", url: Some(url) }, Made { admin_url: self.admin_url.clone(), name })
    }
}

/// `url` with its database replaced by `name` (its query, such as `?sslmode=`, kept).
fn with_database(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(name);
    u.into()
}

/// A fresh database named `<prefix><pid>` for this run, if the server answers;
/// databases earlier runs of the same benchmark left behind are dropped first.
pub async fn fresh(prefix: &str) -> Option<(Database, Made)> {
    let admin_url = std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if admin_url == "none" {
        return None;
    }
    sqlx::any::install_default_drivers();
    let Ok(mut admin) = sqlx::AnyConnection::connect(&admin_url).await else {
        println!("(PostgreSQL at {admin_url} does not answer: its run is skipped)");
        return None;
    };
    let left: Vec<String> = sqlx::query_scalar(&format!("SELECT datname::text FROM pg_database WHERE datname LIKE '{prefix}%'"))
        .fetch_all(&mut admin)
        .await
        .unwrap();
    for name in left {
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    }
    let name = format!("{prefix}{}", std::process::id());
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let url = with_database(&admin_url, &name);
    Some((Database { name: "PostgreSQL", url: Some(url) }, Made { admin_url, name }))
}
