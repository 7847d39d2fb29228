//! Background-refresh benchmark: 10,000 live sessions whose upstream tokens all fall
//! due at once, refreshed by the real `ssogate` binary (release build, SQLite)
//! against an in-process fake IdP (refresh grant with a signed ID token, userinfo
//! with groups, group sync on). Reports how long the sweep takes and ssogate's own
//! CPU per refresh (from /proc); then the same sessions due spread over one minute,
//! and how late the latest refresh ran.
//!
//! `cargo bench --bench refresh` — knobs: BENCH_SESSIONS (default 10000), BENCH_PIN=0.

// A benchmark stops at the first failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/fake_op.rs"]
#[allow(dead_code)] // the fault knobs serve the tests, not the benchmark
mod fake_op;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use sqlx::Connection as _;
use ssogate::core::claims::IdpProfile;
use ssogate::core::ids::{new_id, IdKind};
use ssogate::core::session::UpstreamTokens;
use ssogate::core::{now, Timestamp};
use ssogate::crypto::SecretBox;
use ssogate::store::{Grant, Provisioned, RefreshState, Session, SessionHandle, SignIn, SqlStore, Store};
use support::{admin, cpu_seconds, env_or, start_ssogate};

const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const APP: &str = "https://app.example.test/cb";

/// One signed-in user with a session holding refresh token `rt.<sub>.0`, not yet due.
async fn seed_session(store: &dyn Store, connection: &ssogate::core::connection::Connection, app_id: &str, i: u64) {
    let sub = format!("bench-{i}");
    let t = now();
    let profile = IdpProfile { idp_sub: sub.clone(), email: Some(format!("{sub}@bench.test")), email_verified: true, ..Default::default() };
    let Provisioned::User(user) = store.provision_user(connection, &profile, t).await.unwrap() else { panic!("provisioning") };
    let until = t + Duration::from_secs(12 * 3600);
    let session = Session {
        id: new_id(IdKind::Session),
        id_hash: SessionHandle::of_secret(&format!("bench-session-{i}")),
        user_id: user.user.id.clone(),
        organization_id: connection.organization_id.clone(),
        connection_id: Some(connection.id.clone()),
        auth_time: t,
        created_at: t,
        expires_at: until,
        idle_expires_at: until,
        last_active_at: t,
        idp_sub: Some(sub.clone()),
        idp_sid: None,
        upstream: Some(UpstreamTokens {
            access_token: Some(format!("at.{sub}.0")),
            refresh_token: Some(format!("rt.{sub}.0")),
            expires_at: Some(t.unix_timestamp() + 3600),
            nonce: "n".into(),
            ..Default::default()
        }),
        refresh: RefreshState::default(),
    };
    let grant = Grant {
        code_hash: format!("bench-code-{i}"),
        application_id: app_id.into(),
        redirect_uri: APP.into(),
        user_id: user.user.id.clone(),
        session_hash: session.id_hash.clone(),
        session_id: session.id.clone(),
        scope: "openid email groups".into(),
        nonce: None,
        code_challenge: None,
        auth_time: t,
        claims: json!({"sub": user.user.id}),
        code_expires_at: t + Duration::from_secs(3600),
    };
    let state = format!("bench-state-{i}");
    let sign_in = SignIn { session: &session, state_hash: &state, state_expires_at: t + Duration::from_secs(600) };
    store.create_grant(&grant, Some(sign_in)).await.unwrap();
}

fn ms(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Waits until `n` sessions were refreshed after `since`; returns the wall time taken.
async fn wait_refreshed(db: &mut sqlx::AnyConnection, since: Timestamp, n: i64, patience: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE refreshed_at >= $1").bind(ms(since)).fetch_one(&mut *db).await.unwrap();
        if done >= n {
            return started.elapsed();
        }
        if started.elapsed() > patience {
            let errors: Vec<Option<String>> =
                sqlx::query_scalar("SELECT DISTINCT refresh_error FROM sessions LIMIT 5").fetch_all(&mut *db).await.unwrap();
            panic!("only {done} of {n} sessions refreshed in {patience:?}; errors: {errors:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let sessions = env_or("BENCH_SESSIONS", 10_000);
    let http = reqwest::Client::new();
    let op = fake_op::FakeOp::start("bench-client").await;
    let server = start_ssogate(&http, &[("SSOGATE_ENCRYPTION_KEY", KEY)]).await;
    let pid = server.child.id();
    let base = server.base.clone();
    admin(&http, &base, "/organizations", json!({"name": "Bench", "slug": "bench"})).await;
    let conn = admin(
        &http,
        &base,
        "/organizations/bench/connections",
        json!({"name": "Fake", "client_id": "bench-client", "client_secret": "fake-secret", "discovery_url": op.issuer,
               "group_sync": {"enabled": true, "claim": "groups", "mapping": "Engineering -> engineers, Sales Team -> sales",
                              "create_missing_groups": true}}),
    )
    .await;
    let app = admin(&http, &base, "/applications", json!({"name": "Bench", "redirect_uris": [APP]})).await;

    // Seed the sessions straight into ssogate's database, none due yet.
    let key = SecretBox::parse_key(KEY).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&server.database_url(), Arc::new(SecretBox::new(&key))).await.unwrap());
    let connection = store.get_connection(conn["id"].as_str().unwrap()).await.unwrap().unwrap();
    let app_id = app["id"].as_str().unwrap().to_owned();
    let seeding = Instant::now();
    futures_util::stream::iter(0..sessions)
        .for_each_concurrent(8, |i| {
            let (store, connection, app_id) = (store.clone(), &connection, &app_id);
            async move { seed_session(store.as_ref(), connection, app_id, i).await }
        })
        .await;
    println!("ssogate background-refresh benchmark ({sessions} live sessions, release build, SQLite, fake IdP in-process)");
    println!("  seeded in {:.1} s", seeding.elapsed().as_secs_f64());
    let mut db = sqlx::AnyConnection::connect(&server.database_url()).await.unwrap();

    // All due at the same instant.
    let t = now();
    let cpu_before = cpu_seconds(pid);
    sqlx::query("UPDATE sessions SET refresh_at = $1").bind(ms(t)).execute(&mut db).await.unwrap();
    let sweep = wait_refreshed(&mut db, t, sessions as i64, Duration::from_secs(60)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    println!(
        "  all due at once: swept in {:.1} s ({:.0} refreshes/s, target: 10,000 within the minute); {:.2} ms ssogate CPU per refresh \
         (token exchange, ID token check, userinfo, profile update, group sync, claims re-issue)",
        sweep.as_secs_f64(),
        sessions as f64 / sweep.as_secs_f64(),
        cpu * 1000.0 / sessions as f64
    );

    // Due spread over one minute: how far behind schedule does any refresh run?
    let start = now() + Duration::from_secs(1);
    let step_ms = 60_000 / sessions.max(1) as i64;
    sqlx::query("UPDATE sessions SET refresh_at = $1 + (CAST(substr(id_hash, 15) AS INTEGER) * $2)")
        .bind(ms(start))
        .bind(step_ms)
        .execute(&mut db)
        .await
        .unwrap();
    wait_refreshed(&mut db, start, sessions as i64, Duration::from_secs(300)).await;
    let lag: Vec<i64> = sqlx::query_scalar("SELECT refreshed_at - $1 - (CAST(substr(id_hash, 15) AS INTEGER) * $2) FROM sessions")
        .bind(ms(start))
        .bind(step_ms)
        .fetch_all(&mut db)
        .await
        .unwrap();
    let mut lag = lag;
    lag.sort_unstable();
    println!(
        "  due spread over one minute: refreshed {} ms after due at the median, {} ms at p99, {} ms at worst (the worker polls every second)",
        lag[lag.len() / 2],
        lag[lag.len() * 99 / 100],
        lag[lag.len() - 1]
    );
    let failures: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE refresh_error IS NOT NULL").fetch_one(&mut db).await.unwrap();
    println!("  sessions with a failed refresh: {failures}");
}
