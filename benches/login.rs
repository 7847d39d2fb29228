//! Brokered-login benchmark: runs full logins through the real `ssogate` binary
//! (release build) against an in-process fake IdP, and measures ssogate's own CPU per
//! login (from /proc, so the IdP's and this client's work are excluded) beside the
//! login's floor measured in the same run (its cryptography, and its statements on
//! the same database: `support/floor.rs`); on SQLite, then on PostgreSQL when one
//! answers. Then `userinfo` with a valid token, beside a bare axum handler that
//! returns the same body (`axum::serve`, on the same runtime, allocator and core).
//! And, on each database, the refresh grant and a resource server's introspection,
//! each as ssogate's CPU per request.
//!
//! `cargo bench --bench login` — knobs: BENCH_LOGINS (default 2000), BENCH_REFRESHES
//! (default 1000 per algorithm, and as many introspections), BENCH_CONCURRENCY
//! (default 8), BENCH_USERINFO_SECS (default 5), BENCH_POSTGRES_URL (default the local
//! server's `test` database; `none` skips PostgreSQL), BENCH_PIN=0 (see `pinned`),
//! BENCH_SSOGATE_LOG.

// A benchmark stops at the first failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/fake_op.rs"]
#[allow(dead_code)] // the fault knobs serve the tests, not the benchmark
mod fake_op;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::floor::{self, Crypto};
use support::postgres::{self, Database};
use support::{admin, browser_login, cpu_seconds, env_or, sign_in_with_scope, start_ssogate, APP};

/// ssogate's allocator, so that the bare handler is served as ssogate is.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set (to a file holding the body) when this binary runs as the bare handler.
const BARE_BODY: &str = "BENCH_BARE_BODY";
/// Sign-ins replayed for the floor's statements.
const FLOOR_SIGN_INS: u32 = 2000;

async fn run_logins(http: &reqwest::Client, base: &str, client_id: &str, secret: &str, total: u64, concurrency: u64) -> Duration {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // One person per worker: sign-ins at once are of different people, as in life (one
    // user's row updated by eight at once would measure row-lock waits instead).
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, base, client_id, secret, done) =
                (http.clone(), base.to_owned(), client_id.to_owned(), secret.to_owned(), done.clone());
            tokio::spawn(async move {
                let person = format!("bench-user-{worker}");
                while done.fetch_add(1, Ordering::Relaxed) < total {
                    browser_login(&http, &base, &client_id, &secret, "bench", Some(&person)).await.expect("login");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    started.elapsed()
}

const BENCH_DATABASES: &str = "ssogate_bench_login_";

/// How much of each request kind the benchmark makes.
struct Counts {
    logins: u64,
    refreshes: u64,
    concurrency: u64,
}

/// `n` requests from each of `chains` at once; returns ssogate's CPU per request
/// (ms), the rate, and what each chain ended with. `step` makes one request from a
/// chain's state and returns its next state.
async fn timed<S, F, Fut>(pid: u32, chains: Vec<S>, n: u64, step: F) -> (f64, f64, Vec<S>)
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = S> + Send,
{
    let total = n * chains.len() as u64;
    let (cpu, started) = (cpu_seconds(pid), Instant::now());
    let tasks: Vec<_> = chains
        .into_iter()
        .map(|mut state| {
            let step = step.clone();
            tokio::spawn(async move {
                for _ in 0..n {
                    state = step(state).await;
                }
                state
            })
        })
        .collect();
    let mut ends = vec![];
    for t in tasks {
        ends.push(t.await.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    ((cpu_seconds(pid) - cpu) * 1000.0 / total as f64, rate, ends)
}

/// The refresh grant (RFC 6749 §6) for each ID token algorithm, each of
/// `concurrency` people refreshing their own chain (every refresh spends the token
/// the last one gave), then a resource server introspecting their access tokens
/// (RFC 7662): ssogate's CPU per request, against the 0.5 ms.
async fn refresh_and_introspection(browser: &reqwest::Client, base: &str, pid: u32, counts: &Counts) {
    const API: &str = "https://api.bench.test";
    let api =
        admin(browser, base, "/applications", json!({"name": "api", "client_type": "resource_server", "access_token_audience": API})).await;
    let api = (api["client_id"].as_str().unwrap().to_owned(), api["client_secret"].as_str().unwrap().to_owned());
    let per_chain = (counts.refreshes / counts.concurrency).max(1);
    for alg in ["RS256", "ES256"] {
        let app = admin(
            browser,
            base,
            "/applications",
            json!({"name": "offline", "redirect_uris": [APP], "id_token_signed_response_alg": alg, "access_token_audience": API}),
        )
        .await;
        let client = (app["client_id"].as_str().unwrap().to_owned(), app["client_secret"].as_str().unwrap().to_owned());
        let mut chains = vec![];
        for worker in 0..counts.concurrency {
            let person = format!("bench-user-{worker}");
            let scope = "openid email profile groups offline_access";
            let login = sign_in_with_scope(browser, base, (&client.0, &client.1), "bench", Some(&person), scope).await.expect("login");
            chains.push((login.access_token, login.refresh_token.expect("offline_access gives a refresh token")));
        }
        let token_url = format!("{base}/oauth2/token");
        let (http, c) = (browser.clone(), client.clone());
        let (refresh_ms, refresh_rate, chains) = timed(pid, chains, per_chain, move |(_, refresh): (String, String)| {
            let (http, token_url, c) = (http.clone(), token_url.clone(), c.clone());
            async move {
                let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
                let r: serde_json::Value =
                    http.post(&token_url).basic_auth(&c.0, Some(&c.1)).form(&form).send().await.unwrap().json().await.unwrap();
                let next = |name: &str| r[name].as_str().unwrap_or_else(|| panic!("the refresh failed: {r}")).to_owned();
                (next("access_token"), next("refresh_token"))
            }
        })
        .await;
        let introspect_url = format!("{base}/oauth2/introspect");
        let (http, api) = (browser.clone(), api.clone());
        let (introspect_ms, introspect_rate, _) = timed(pid, chains, per_chain, move |(access, refresh): (String, String)| {
            let (http, introspect_url, api) = (http.clone(), introspect_url.clone(), api.clone());
            async move {
                let r: serde_json::Value = http
                    .post(&introspect_url)
                    .basic_auth(&api.0, Some(&api.1))
                    .form(&[("token", &access)])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["active"], true, "{r}");
                (access, refresh)
            }
        })
        .await;
        println!(
            "    ID token {alg}: refresh grant ssogate {refresh_ms:.3} ms CPU per refresh ({refresh_rate:.0}/s); introspection \
             {introspect_ms:.3} ms CPU per request ({introspect_rate:.0}/s); target 0.5 ms each: ratios {:.2} and {:.2}",
            refresh_ms / 0.5,
            introspect_ms / 0.5,
        );
    }
}

/// Logins with each ID token algorithm on `db`, each beside its floor; then refreshes
/// and introspections.
async fn logins_against_the_floor(op: &fake_op::FakeOp, db: &Database, crypto: &Crypto, counts: &Counts) {
    let (logins, concurrency) = (counts.logins, counts.concurrency);
    let http = reqwest::Client::new();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // With PostgreSQL the key that encrypts secrets at rest must be given.
    let key = "00".repeat(32);
    let env: Vec<(&str, &str)> =
        db.url.iter().flat_map(|u| [("SSOGATE_DATABASE_URL", u.as_str()), ("SSOGATE_ENCRYPTION_KEY", key.as_str())]).collect();
    let server = start_ssogate(&http, &env).await;
    let (pid, base) = (server.child.id(), server.base.clone());
    let url = db.url.clone().unwrap_or_else(|| server.database_url());
    let postgres = match &db.url {
        Some(url) => {
            let seen = floor::PostgresServer::of(url).await;
            if seen.is_none() {
                println!("  (PostgreSQL's processes are not visible from here: its own CPU is not counted)");
            }
            seen
        }
        None => None,
    };
    admin(&http, &base, "/organizations", json!({"name": "Bench", "slug": "bench"})).await;
    let connection = json!({"name": "Fake", "client_id": "bench-client", "client_secret": "fake-secret", "discovery_url": op.issuer});
    admin(&http, &base, "/organizations/bench/connections", connection).await;
    println!("  {}:", db.name);
    for alg in ["RS256", "ES256"] {
        let app =
            admin(&http, &base, "/applications", json!({"name": alg, "redirect_uris": [APP], "id_token_signed_response_alg": alg})).await;
        let (client_id, secret) = (app["client_id"].as_str().unwrap().to_owned(), app["client_secret"].as_str().unwrap().to_owned());
        run_logins(&browser, &base, &client_id, &secret, 50, concurrency).await; // warm-up
        let (cpu_before, pg_before) = (cpu_seconds(pid), postgres.as_ref().map(floor::PostgresServer::cpu));
        let wall = run_logins(&browser, &base, &client_id, &secret, logins, concurrency).await;
        let per_login = |seconds: f64| seconds * 1000.0 / logins as f64;
        let ssogate = per_login(cpu_seconds(pid) - cpu_before);
        let rate = logins as f64 / wall.as_secs_f64();
        let crypto_ms = crypto.per_sign_in(alg) * 1000.0;
        let statements = floor::statements(&url, FLOOR_SIGN_INS, postgres.as_ref()).await;
        let through_sqlx = statements.through_sqlx * 1000.0;
        match (&postgres, pg_before, statements.database) {
            (Some(server), Some(before), Some(sql)) => {
                let database = per_login(server.cpu().since(&before));
                let (sql, floor) = (sql * 1000.0, sql * 1000.0 + crypto_ms);
                println!(
                    "    ID token {alg}: ssogate {ssogate:.3} ms + PostgreSQL {database:.3} ms CPU per login; floor {floor:.3} ms \
                     (crypto {crypto_ms:.3}, PostgreSQL's work for the statements {sql:.3}; sending them through sqlx costs this \
                     side {through_sqlx:.3}); ratio {:.2}; {rate:.0} logins/s",
                    (ssogate + database) / floor,
                );
            }
            (None, _, Some(sql)) => {
                let (sql, floor) = (sql * 1000.0, sql * 1000.0 + crypto_ms);
                println!(
                    "    ID token {alg}: ssogate {ssogate:.3} ms CPU per login; floor {floor:.3} ms (crypto {crypto_ms:.3}, SQLite's \
                     work for the statements {sql:.3}; through sqlx {through_sqlx:.3}); ratio {:.2}; {rate:.0} logins/s",
                    ssogate / floor,
                );
            }
            _ => println!(
                "    ID token {alg}: ssogate {ssogate:.3} ms CPU per login; crypto {crypto_ms:.3} ms; the statements through sqlx \
                 {through_sqlx:.3} ms (no ratio without the database's own CPU); {rate:.0} logins/s"
            ),
        }
    }
    if counts.refreshes > 0 {
        refresh_and_introspection(&browser, &base, pid, counts).await;
    }
}

/// `userinfo` on SQLite, and a bare axum handler returning the same body: taken in
/// turns, three rounds each, so that the machine's drift falls on both; the medians.
async fn userinfo_against_bare_axum(op: &fake_op::FakeOp, secs: u64) {
    let http = reqwest::Client::new();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let server = start_ssogate(&http, &[]).await;
    let base = server.base.clone();
    admin(&http, &base, "/organizations", json!({"name": "Bench", "slug": "bench"})).await;
    let connection = json!({"name": "Fake", "client_id": "bench-client", "client_secret": "fake-secret", "discovery_url": op.issuer});
    admin(&http, &base, "/organizations/bench/connections", connection).await;
    let app = admin(&http, &base, "/applications", json!({"name": "userinfo", "redirect_uris": [APP]})).await;
    let token = browser_login(&browser, &base, app["client_id"].as_str().unwrap(), app["client_secret"].as_str().unwrap(), "bench", None)
        .await
        .expect("login")
        .access_token;
    let url = format!("{base}/oauth2/userinfo");
    let body = http.get(&url).bearer_auth(&token).send().await.unwrap().bytes().await.unwrap();

    let body_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body_file.path(), &body).unwrap();
    let me = std::env::current_exe().unwrap();
    let (bare, bare_base, _) = support::start_pinned(me.to_str().unwrap(), &[], &[(BARE_BODY, body_file.path().to_str().unwrap())]);
    let bare = support::KillOnDrop(bare);
    let bare_url = format!("{bare_base}/oauth2/userinfo");
    support::wait_until_up(&http, &bare_url).await;

    let (mut ours, mut theirs) = (vec![], vec![]);
    for _ in 0..3 {
        ours.push(support::hammer(&http, &url, &token, server.child.id(), secs).await);
        theirs.push(support::hammer(&http, &bare_url, &token, bare.0.id(), secs).await);
    }
    let failed: u64 = ours.iter().chain(&theirs).map(|r| r.2).sum();
    assert_eq!(failed, 0, "every request answered");
    let median = |runs: &[(f64, f64, u64)], pick: fn(&(f64, f64, u64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rate, cpu) = (median(&ours, |r| r.0), median(&ours, |r| r.1));
    let (bare_rate, bare_cpu) = (median(&theirs, |r| r.0), median(&theirs, |r| r.1));
    println!(
        "  userinfo: ssogate {cpu:.1} µs CPU per request ({rate:.0} requests/s); a bare axum handler with the same {}-byte body \
         {bare_cpu:.1} µs ({bare_rate:.0} requests/s); ratio {:.2} (medians of 3 rounds of {secs} s each, in turns)",
        body.len(),
        cpu / bare_cpu,
    );
}

/// The bare handler: the body, as JSON, on every GET of `/oauth2/userinfo`.
async fn serve_bare(body_file: &str, listen: &str) {
    let body = axum::body::Bytes::from(std::fs::read(body_file).unwrap());
    let app = axum::Router::new().route(
        "/oauth2/userinfo",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    axum::serve(tokio::net::TcpListener::bind(listen).await.unwrap(), app).await.unwrap();
}

fn main() {
    // Runtimes as ssogate's own `#[tokio::main]`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if let Ok(body_file) = std::env::var(BARE_BODY) {
        let listen = std::env::args().skip_while(|a| a != "--listen").nth(1).unwrap();
        return runtime.block_on(serve_bare(&body_file, &listen));
    }
    runtime.block_on(run());
}

async fn run() {
    let counts = Counts {
        logins: env_or("BENCH_LOGINS", 2000),
        refreshes: env_or("BENCH_REFRESHES", 1000),
        concurrency: env_or("BENCH_CONCURRENCY", 8),
    };
    let (logins, concurrency) = (counts.logins, counts.concurrency);
    let userinfo_secs = env_or("BENCH_USERINFO_SECS", 5);
    let op = fake_op::FakeOp::start("bench-client").await;
    let placement = if support::pinned() { "ssogate pinned to core 0, load generator and IdP on core 1" } else { "all sharing both cores" };
    println!("ssogate brokered-login benchmark ({logins} logins, {concurrency} concurrent, release build; {placement})");
    let crypto = Crypto::measure();
    println!(
        "  the floor's cryptography (aws-lc-rs, this process): RS256 sign {:.3} ms, RS256 verify {:.3} ms, ES256 sign {:.3} ms",
        crypto.rs256_sign * 1000.0,
        crypto.rs256_verify * 1000.0,
        crypto.es256_sign * 1000.0
    );
    let sqlite = Database { name: "SQLite", url: None };
    logins_against_the_floor(&op, &sqlite, &crypto, &counts).await;
    if let Some((pg, _dropped_after)) = postgres::fresh(BENCH_DATABASES).await {
        logins_against_the_floor(&op, &pg, &crypto, &counts).await;
    }
    if userinfo_secs > 0 {
        userinfo_against_bare_axum(&op, userinfo_secs).await;
    }
}
