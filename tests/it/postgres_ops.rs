//! Running ssogate on PostgreSQL as operators do: migrations by a role with DDL
//! rights and the service without them, and the database restarting under load.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::{execute, PgDatabase};
use common::pg_server::PgServer;
use common::{Options, Ssogate};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

const KEY: &str = "c3NvZ2F0ZS10ZXN0LXBvc3RncmVzLW9wcy1rZXktMzI=";

/// Runs an ssogate command that is expected to end; returns whether it succeeded
/// and what it wrote on stderr.
fn run_ssogate(args: &[&str], database_url: &str, dir: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssogate"))
        .args(args)
        .current_dir(dir)
        .env("SSOGATE_DATABASE_URL", database_url)
        .env("SSOGATE_ENCRYPTION_KEY", KEY)
        .env("SSOGATE_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .env_remove("SSOGATE_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ssogate {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn pg_options(database_url: String, extra_args: Vec<String>) -> Options {
    Options { database_url: Some(database_url), env: vec![("SSOGATE_ENCRYPTION_KEY".into(), KEY.into())], extra_args, ..Default::default() }
}

#[tokio::test]
async fn the_service_runs_without_ddl_rights_once_migrate_has_run() {
    let db = PgDatabase::create().await;
    let role = format!("{}_svc", db.name);
    execute(&db.url, &format!("CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {} TO {role}", db.name)).await;
    let dir = tempfile::tempdir().unwrap();
    let service_url = db.url_as(&role);

    // Before any migration: the service refuses to start, saying what to do.
    let (ok, err) = run_ssogate(&["serve", "--listen", "127.0.0.1:0", "--no-migrate"], &service_url, dir.path());
    assert!(!ok && err.contains("pending") && err.contains("ssogate migrate"), "{err}");
    let (ok, err) = run_ssogate(&["serve", "--listen", "127.0.0.1:0"], &service_url, dir.path());
    assert!(!ok && err.contains("DDL"), "without --no-migrate it tries, and says why it failed: {err}");

    // The deploy step, as the owner; the service role has data rights only.
    // (Granted as deploy/postgres-init.sql does: tables the owner creates later come
    // with data rights for the service.)
    execute(
        &db.url,
        &format!(
            "GRANT USAGE ON SCHEMA public TO {role}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
    )
    .await;
    let (ok, err) = run_ssogate(&["migrate"], &db.url, dir.path());
    assert!(ok, "{err}");
    let sso = Ssogate::start_with(dir.path(), pg_options(service_url.clone(), vec!["--no-migrate".into()])).await;
    let (s, org) = sso.post("/organizations", json!({"name": "Acme", "domains": ["acme.test"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    let (s, _) = sso.post("/applications", json!({"name": "App", "redirect_uris": ["https://app.test/cb"]})).await;
    assert_eq!(s, StatusCode::CREATED);
    // It could not have created a table if it had tried.
    let mut denied = sqlx::postgres::PgConnection::connect(&service_url).await.unwrap();
    assert!(sqlx::query("CREATE TABLE t (x int)").execute(&mut denied).await.is_err());
    drop(sso);
    drop(db);
    execute(&common::pg::admin_url(), &format!("DROP ROLE IF EXISTS {role}")).await;
}

/// One request of the load: when it started and ended, and how it went.
#[derive(Debug, Clone)]
struct Outcome {
    started: Instant,
    status: u16,
    body: String,
    created: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_costs_failed_requests_only_while_it_is_down() {
    let server = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let url = server.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let sso = Arc::new(Ssogate::start_with(dir.path(), pg_options(url, vec!["--db-acquire-timeout".into(), "1s".into()])).await);
    let (s, _) = sso.post("/organizations", json!({"name": "Acme", "slug": "acme"})).await;
    assert_eq!(s, StatusCode::CREATED);

    // Eight clients creating and reading users without pause, for 12 seconds.
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let t0 = Instant::now();
    let load: Vec<_> = (0..8)
        .map(|client| {
            let (sso, outcomes) = (sso.clone(), outcomes.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while t0.elapsed() < Duration::from_secs(12) {
                    n += 1;
                    let started = Instant::now();
                    let (status, body) = if n % 2 == 0 {
                        sso.post("/organizations/acme/users", json!({"email": format!("c{client}-{n}@acme.test")})).await
                    } else {
                        sso.get("/organizations/acme/users?limit=5").await
                    };
                    let created = (status == StatusCode::CREATED).then(|| body["id"].as_str().unwrap().to_owned());
                    outcomes.lock().unwrap().push(Outcome { started, status: status.as_u16(), body: body.to_string(), created });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopping = Instant::now();
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sso.raw().get(sso.url("/readyz")).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness reports the outage"
    );
    let server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    let back = Instant::now();
    for task in load {
        task.await.unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status >= 400).collect();
    assert!(!failed.is_empty(), "the outage was felt");
    eprintln!(
        "{} requests, {} failed, from {:?} to {:?} after the stop; back {:?} after the stop",
        outcomes.len(),
        failed.len(),
        failed.first().map(|f| f.started - stopping),
        failed.last().map(|f| f.started - stopping),
        back - stopping
    );
    for f in &failed {
        assert_eq!(f.status, 503, "only 'unavailable' while the database is down: {f:?}");
        assert!(f.body.contains("database_unavailable"), "{f:?}");
        assert!(f.started >= stopping - Duration::from_millis(100), "failed before the stop: {f:?}");
        assert!(f.started <= back + Duration::from_millis(500), "failed {:?} after the database was back: {f:?}", f.started - back);
    }
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started > back + Duration::from_millis(500)).collect();
    assert!(after.len() > 50 && after.iter().all(|o| o.status < 300), "serving again");
    // Nothing acknowledged was lost, and nothing refused was half-written.
    let created: Vec<&String> = outcomes.iter().filter_map(|o| o.created.as_ref()).collect();
    for id in &created {
        assert_eq!(sso.get(&format!("/users/{id}")).await.0, StatusCode::OK, "user {id} was acknowledged");
    }
    let (_, e) = sso.get("/organizations/acme/entitlements").await;
    assert_eq!(e["user_count"].as_u64(), Some(created.len() as u64), "no user beyond those acknowledged");
    assert_eq!(sso.raw().get(sso.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    drop(server);
}
