//! Load test: many concurrent sign-ins across many organizations for a minute,
//! through the real `ssogate` binary (release build) and an in-process fake IdP.
//! Half the sign-ins are people signing in for the first time, half are people
//! signing in again. Afterwards the directory must hold exactly one user per person
//! who signed in: none lost, none twice. Reports throughput, the latency ssogate
//! adds to a sign-in (its own requests only), 5xx answers, and ssogate's memory.
//!
//! `cargo bench --bench load` — knobs: BENCH_LOAD_SECS (60), BENCH_LOAD_CONCURRENCY
//! (200), BENCH_LOAD_ORGS (50), BENCH_DATABASE_URL (default: SQLite in a temp dir;
//! e.g. postgres://postgres@127.0.0.1/ssogate_load for PostgreSQL), BENCH_PIN=0.

// A benchmark stops at the first failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/fake_op.rs"]
#[allow(dead_code)] // the fault knobs serve the tests, not the benchmark
mod fake_op;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{admin, browser_login, cpu_seconds, env_or, start_ssogate, LoginFailure, ADMIN, APP};

#[derive(Default)]
struct Tally {
    /// Per organization, the people who signed in successfully.
    signed_in: HashMap<usize, HashSet<String>>,
    in_ssogate: Vec<Duration>,
    server_errors: u64,
    other_failures: Vec<String>,
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn users_of(http: &reqwest::Client, base: &str, org: usize) -> Vec<Value> {
    let mut all = vec![];
    let mut cursor = String::new();
    loop {
        let url = format!("{base}/api/v1/organizations/load-{org}/users?limit=200{cursor}");
        let page: Value = http.get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

#[tokio::main]
async fn main() {
    let secs = env_or("BENCH_LOAD_SECS", 60);
    let concurrency = env_or("BENCH_LOAD_CONCURRENCY", 200) as usize;
    let orgs = env_or("BENCH_LOAD_ORGS", 50) as usize;
    let database = std::env::var("BENCH_DATABASE_URL").ok();
    let http = reqwest::Client::new();
    let browser =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(concurrency).build().unwrap();
    // Each organization has an IdP of its own, as in life.
    let mut idps = vec![];
    for _ in 0..orgs {
        idps.push(fake_op::FakeOp::start("bench-client").await);
    }
    let mut env = vec![];
    if let Some(url) = &database {
        env.push(("SSOGATE_DATABASE_URL", url.as_str()));
        env.push(("SSOGATE_ENCRYPTION_KEY", "YmVuY2gtbG9hZC1lbmNyeXB0aW9uLWtleS0zMmJ5dGU="));
    }
    let server = start_ssogate(&http, &env).await;
    let (pid, base) = (server.child.id(), server.base.clone());
    for (i, op) in idps.iter().enumerate() {
        admin(&http, &base, "/organizations", json!({"name": format!("Load {i}"), "slug": format!("load-{i}")})).await;
        admin(
            &http,
            &base,
            &format!("/organizations/load-{i}/connections"),
            json!({"name": "Fake", "client_id": "bench-client", "client_secret": "fake-secret", "discovery_url": op.issuer}),
        )
        .await;
    }
    let app = admin(&http, &base, "/applications", json!({"name": "Load", "redirect_uris": [APP]})).await;
    let (client_id, secret) = (app["client_id"].as_str().unwrap().to_owned(), app["client_secret"].as_str().unwrap().to_owned());
    let placement = if server.pinned { "ssogate pinned to core 0, load generator and IdP on core 1" } else { "all sharing the cores" };
    println!(
        "ssogate load test: {concurrency} concurrent sign-ins across {orgs} organizations for {secs} s ({}; {placement})",
        if database.is_some() { "PostgreSQL" } else { "SQLite" }
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let cpu_before = cpu_seconds(pid);
    let memory = Arc::new(Mutex::new(vec![(0u64, rss_mib(pid))]));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let sampler = {
        let memory = memory.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(5)).await;
                memory.lock().unwrap().push((started.elapsed().as_secs(), rss_mib(pid)));
            }
        })
    };
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (browser, base, client_id, secret, tally) =
                (browser.clone(), base.clone(), client_id.clone(), secret.clone(), tally.clone());
            tokio::spawn(async move {
                let org = w % orgs;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    // Even rounds: a new person; odd rounds: the previous one again.
                    let person = format!("w{w}-p{}", n / 2);
                    n += 1;
                    let result = browser_login(&browser, &base, &client_id, &secret, &format!("load-{org}"), Some(&person)).await;
                    let mut t = tally.lock().unwrap();
                    match result {
                        Ok(login) => {
                            t.signed_in.entry(org).or_default().insert(person);
                            t.in_ssogate.push(login.in_ssogate);
                        }
                        Err(LoginFailure::Status(s)) if s >= 500 => t.server_errors += 1,
                        Err(other) => t.other_failures.push(format!("{other:?}")),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    sampler.await.unwrap();

    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    t.in_ssogate.sort();
    let logins = t.in_ssogate.len();
    println!(
        "  {logins} sign-ins in {:.1} s: {:.0} sign-ins/s; latency ssogate adds per sign-in (authorize + callback + token): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        wall.as_secs_f64(),
        logins as f64 / wall.as_secs_f64(),
        percentile(&t.in_ssogate, 0.50).as_secs_f64() * 1000.0,
        percentile(&t.in_ssogate, 0.99).as_secs_f64() * 1000.0,
        t.in_ssogate.last().unwrap().as_secs_f64() * 1000.0,
    );
    println!("  ssogate CPU: {:.2} ms per sign-in ({:.0}% of a core)", cpu * 1000.0 / logins as f64, cpu * 100.0 / wall.as_secs_f64());
    println!("  5xx answers: {}; other failures: {}", t.server_errors, t.other_failures.len());
    for f in t.other_failures.iter().take(5) {
        println!("    {f}");
    }

    // The directory: exactly the people who signed in, each once.
    let (mut expected, mut found, mut duplicated, mut lost) = (0, 0, 0, 0);
    for org in 0..orgs {
        let people = t.signed_in.remove(&org).unwrap_or_default();
        let users = users_of(&http, &base, org).await;
        let subs: Vec<&str> = users.iter().filter_map(|u| u["idp_sub"].as_str()).collect();
        let distinct: HashSet<&str> = subs.iter().copied().collect();
        duplicated += subs.len() - distinct.len();
        lost += people.iter().filter(|p| !distinct.contains(p.as_str())).count();
        expected += people.len();
        found += users.len();
    }
    println!("  directory: {found} users for {expected} people who signed in; {lost} lost, {duplicated} duplicated");
    let memory = memory.lock().unwrap();
    let samples: Vec<String> = memory.iter().map(|(s, m)| format!("{s}s {m:.0}")).collect();
    println!("  ssogate RSS (MiB): {}", samples.join(", "));
    let settled = memory.iter().find(|(s, _)| *s >= 15).map_or(memory[0].1, |x| x.1);
    println!("  memory from 15 s to the end: {:.0} -> {:.0} MiB", settled, memory.last().unwrap().1);
    assert!(t.server_errors == 0 && lost == 0 && duplicated == 0 && found == expected, "the load test failed its checks");
    drop(idps);
}
