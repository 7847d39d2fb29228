//! A fresh PostgreSQL database per test, on the server at SSOGATE_TEST_POSTGRES_URL
//! (default: the local one), dropped when the test ends.

use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("SSOGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct PgDatabase {
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("ssogate_t_{}", uuid_like());
        execute(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        PgDatabase { url: format!("{base}/{name}"), name, admin_url }
    }

    /// A URL for the same database as another role.
    pub fn url_as(&self, role: &str) -> String {
        let (_, rest) = self.url.split_once('@').unwrap();
        format!("postgres://{role}@{rest}")
    }
}

/// Runs one statement on `url` (test set-up: failures panic).
pub async fn execute(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    c.close().await.ok();
}

/// Unique across the test processes running at once.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{nanos:x}_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, sql) = (self.admin_url.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        // Drop runs inside the test's runtime, which cannot be blocked on: use another.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(execute(&admin_url, &sql));
        })
        .join()
        .ok();
    }
}
