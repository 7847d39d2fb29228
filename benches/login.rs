//! Brokered-login benchmark: runs full logins through the real `ssogate` binary
//! (release build) against an in-process fake IdP, and measures ssogate's own CPU per
//! login (from /proc, so the IdP's and this client's work are excluded), then the
//! throughput of `userinfo` with a valid token.
//!
//! `cargo bench --bench login` — knobs: BENCH_LOGINS (default 2000), BENCH_CONCURRENCY
//! (default 8), BENCH_USERINFO_SECS (default 5), BENCH_PIN=0 (see `pinned`).

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
use support::{admin, browser_login, cpu_seconds, env_or, start_ssogate, APP};

async fn run_logins(http: &reqwest::Client, base: &str, client_id: &str, secret: &str, total: u64, concurrency: u64) -> Duration {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, base, client_id, secret, done) =
                (http.clone(), base.to_owned(), client_id.to_owned(), secret.to_owned(), done.clone());
            tokio::spawn(async move {
                while done.fetch_add(1, Ordering::Relaxed) < total {
                    browser_login(&http, &base, &client_id, &secret, "bench", None).await.expect("login");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let logins = env_or("BENCH_LOGINS", 2000);
    let concurrency = env_or("BENCH_CONCURRENCY", 8);
    let userinfo_secs = env_or("BENCH_USERINFO_SECS", 5);
    let http = reqwest::Client::new();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let op = fake_op::FakeOp::start("bench-client").await;
    let server = start_ssogate(&http, &[]).await;
    let pid = server.child.id();
    let base = server.base.clone();
    admin(&http, &base, "/organizations", json!({"name": "Bench", "slug": "bench"})).await;
    admin(
        &http,
        &base,
        "/organizations/bench/connections",
        json!({"name": "Fake", "client_id": "bench-client", "client_secret": "fake-secret", "discovery_url": op.issuer}),
    )
    .await;

    let placement = if server.pinned { "ssogate pinned to core 0, load generator and IdP on core 1" } else { "all sharing both cores" };
    println!("ssogate brokered-login benchmark ({logins} logins, {concurrency} concurrent, release build, SQLite; {placement})");
    for alg in ["RS256", "ES256"] {
        let app =
            admin(&http, &base, "/applications", json!({"name": alg, "redirect_uris": [APP], "id_token_signed_response_alg": alg})).await;
        let (client_id, secret) = (app["client_id"].as_str().unwrap().to_owned(), app["client_secret"].as_str().unwrap().to_owned());
        run_logins(&browser, &base, &client_id, &secret, 50, concurrency).await; // warm-up
        let cpu_before = cpu_seconds(pid);
        let wall = run_logins(&browser, &base, &client_id, &secret, logins, concurrency).await;
        let cpu = cpu_seconds(pid) - cpu_before;
        println!(
            "  login, ID token {alg}: {:.3} ms ssogate CPU per login (target <= 1 ms), {:.0} logins/s wall-clock",
            cpu * 1000.0 / logins as f64,
            logins as f64 / wall.as_secs_f64()
        );
    }

    let app = admin(&http, &base, "/applications", json!({"name": "userinfo", "redirect_uris": [APP]})).await;
    let token = browser_login(&browser, &base, app["client_id"].as_str().unwrap(), app["client_secret"].as_str().unwrap(), "bench", None)
        .await
        .expect("login")
        .access_token;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(userinfo_secs);
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (http, url, token, ok, failed) =
                (http.clone(), format!("{base}/oauth2/userinfo"), token.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match http.get(&url).bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => {
                            r.bytes().await.ok();
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let n = ok.load(Ordering::Relaxed);
    println!(
        "  userinfo: {:.0} requests/s (target >= 20,000); {:.1} µs ssogate CPU per request ({:.0} requests/s per ssogate core); {} failed",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        n as f64 / cpu,
        failed.load(Ordering::Relaxed)
    );
}
