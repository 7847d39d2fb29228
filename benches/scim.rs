//! Directory-sync benchmark: the initial push an IdP makes to a new directory, then
//! the operations whose cost must not grow with the directory. `cargo bench --bench scim`.
//!
//! 1. POST each of `BENCH_SCIM_USERS` users (default 100,000), then POST each of
//!    `BENCH_SCIM_GROUPS` groups (default 5,000) and PATCH their members in batches
//!    (users spread over the groups), as Okta and Entra ID do, 8 requests in flight;
//! 2. fill one group to 50,000 members in PATCHes of 1,000, then time PATCHes of
//!    1,000 more into it against the same PATCHes into empty groups (mean of 5);
//! 3. GET `/Users?filter=userName eq "…"`, 8 at a time.
//!
//! It prints writes/s, ssogate's CPU per operation (from /proc, so this process is
//! left out) and its RSS after the push. Group sync runs on every membership change
//! (the connection maps groups), as it would in production.

// A benchmark stops at the first failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use support::{admin, cpu_seconds, env_or, start_ssogate};

const IN_FLIGHT: usize = 8;
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Scim {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn add_members(&self, group: &str, users: &[String]) {
        let members: Vec<Value> = users.iter().map(|id| json!({"value": id})).collect();
        let ops = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": members}]});
        self.send(reqwest::Method::PATCH, &format!("/Groups/{group}"), ops).await;
    }
}

/// Runs `n` operations `IN_FLIGHT` at a time; returns (seconds, ssogate CPU seconds).
async fn measure<F, Fut>(pid: u32, n: usize, op: F) -> (f64, f64)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (cpu, started) = (cpu_seconds(pid), Instant::now());
    stream::iter(0..n).for_each_concurrent(IN_FLIGHT, op).await;
    (started.elapsed().as_secs_f64(), cpu_seconds(pid) - cpu)
}

/// One operation's time and ssogate CPU, in milliseconds.
async fn timed(pid: u32, op: impl std::future::Future<Output = ()>) -> (f64, f64) {
    let (cpu, started) = (cpu_seconds(pid), Instant::now());
    op.await;
    (started.elapsed().as_secs_f64() * 1000.0, (cpu_seconds(pid) - cpu) * 1000.0)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

fn report(what: &str, n: usize, (secs, cpu): (f64, f64)) {
    println!("{what:<44} {n:>7} in {secs:>6.1} s: {:>7.0}/s, {:.3} ms of ssogate CPU each", n as f64 / secs, cpu * 1000.0 / n as f64);
}

#[tokio::main]
async fn main() {
    let users = env_or("BENCH_SCIM_USERS", 100_000) as usize;
    let groups = env_or("BENCH_SCIM_GROUPS", 5_000) as usize;
    let big = 50_000.min(users.saturating_sub(2_000));
    let http = reqwest::Client::builder().pool_max_idle_per_host(IN_FLIGHT).build().unwrap();
    let server = start_ssogate(&http, &[]).await;
    let pid = server.child.id();
    admin(&http, &server.base, "/organizations", json!({"name": "Acme", "slug": "acme", "domains": ["acme.test"]})).await;
    let conn = json!({"name": "IdP", "client_id": "c", "client_secret": "s", "discovery_url": "http://127.0.0.1:9/",
                      "group_sync": {"enabled": true, "mapping": "group-1 -> builder\ngroup-2 -> admin"}});
    let conn = admin(&http, &server.base, "/organizations/acme/connections", conn).await;
    let dir = admin(&http, &server.base, "/organizations/acme/directories", json!({"name": "Okta", "connection_id": conn["id"]})).await;
    let scim = Scim {
        http: http.clone(),
        base: dir["scim_base_url"].as_str().unwrap().into(),
        token: dir["bearer_token"].as_str().unwrap().into(),
    };
    println!(
        "ssogate {}; {users} users, {groups} groups, {IN_FLIGHT} requests in flight",
        if server.pinned { "pinned to core 0" } else { "unpinned" }
    );

    let ids = std::sync::Mutex::new(vec![String::new(); users]);
    let posted = measure(pid, users, |i| {
        let (scim, ids) = (&scim, &ids);
        async move {
            let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("user{i}@acme.test"),
                              "externalId": format!("00u{i}"), "active": true, "name": {"givenName": "User", "familyName": format!("N{i}")},
                              "emails": [{"value": format!("user{i}@acme.test"), "type": "work", "primary": true}]});
            let created = scim.send(reqwest::Method::POST, "/Users", user).await;
            ids.lock().unwrap()[i] = created["id"].as_str().unwrap().to_owned();
        }
    })
    .await;
    report("POST /Users", users, posted);
    let ids = ids.into_inner().unwrap();

    let group_ids = std::sync::Mutex::new(vec![String::new(); groups]);
    let created = measure(pid, groups, |i| {
        let (scim, group_ids) = (&scim, &group_ids);
        async move {
            let g = scim.send(reqwest::Method::POST, "/Groups", json!({"displayName": format!("group-{i}"), "members": []})).await;
            group_ids.lock().unwrap()[i] = g["id"].as_str().unwrap().to_owned();
        }
    })
    .await;
    report("POST /Groups", groups, created);
    let group_ids = group_ids.into_inner().unwrap();
    // Every user outside the big group's share joins one group, in one PATCH per group.
    let spread = &ids[big + 2_000..];
    let per_group = spread.len().div_ceil(groups).max(1);
    let patched = measure(pid, groups, |g| {
        let (scim, group_ids) = (&scim, &group_ids);
        let members = spread.chunks(per_group).nth(g).unwrap_or_default().to_vec();
        async move {
            if !members.is_empty() {
                scim.add_members(&group_ids[g], &members).await;
            }
        }
    })
    .await;
    report(&format!("PATCH /Groups (+{per_group} members each)"), groups, patched);
    let writes = users + 2 * groups;
    let (secs, cpu) = (posted.0 + created.0 + patched.0, posted.1 + created.1 + patched.1);
    println!(
        "initial push: {writes} SCIM writes in {secs:.1} s = {:.0} writes/s; {:.3} ms of ssogate CPU per write; RSS {:.0} MiB",
        writes as f64 / secs,
        cpu * 1000.0 / writes as f64,
        rss_mib(pid)
    );

    // A PATCH's cost is that of the members it adds, whatever the group holds.
    let big_group =
        scim.send(reqwest::Method::POST, "/Groups", json!({"displayName": "everyone"})).await["id"].as_str().unwrap().to_owned();
    let filled = measure(pid, big / 1_000, |b| {
        let (scim, big_group, ids) = (&scim, &big_group, &ids);
        async move { scim.add_members(big_group, &ids[b * 1_000..(b + 1) * 1_000]).await }
    })
    .await;
    report("PATCH +1,000 members filling one group", big / 1_000, filled);
    // Several PATCHes each, as CPU time from /proc comes in 10 ms ticks: into the big
    // group, and each into a new, empty group, with users in neither.
    let rounds = ((users - big) / 2_000).clamp(1, 5);
    let (mut into_big, mut into_empty) = ((0.0, 0.0), (0.0, 0.0));
    for r in 0..rounds {
        let from = big + 2 * r * 1_000;
        let (ms, cpu) = timed(pid, scim.add_members(&big_group, &ids[from..from + 1_000])).await;
        into_big = (into_big.0 + ms / rounds as f64, into_big.1 + cpu / rounds as f64);
        let empty = scim.send(reqwest::Method::POST, "/Groups", json!({"displayName": format!("newcomers-{r}")})).await;
        let empty = empty["id"].as_str().unwrap();
        let (ms, cpu) = timed(pid, scim.add_members(empty, &ids[from + 1_000..from + 2_000])).await;
        into_empty = (into_empty.0 + ms / rounds as f64, into_empty.1 + cpu / rounds as f64);
    }
    println!(
        "PATCH +1,000 members into a {big}-member group: {:.0} ms, {:.0} ms CPU; into an empty group: {:.0} ms, {:.0} ms CPU; \
         ratio {:.2} (mean of {rounds})",
        into_big.0,
        into_big.1,
        into_empty.0,
        into_empty.1,
        into_big.1 / into_empty.1.max(1.0)
    );

    let lookups = 1_000.min(users);
    let found = measure(pid, lookups, |i| {
        let scim = &scim;
        let n = i * (users / lookups);
        async move {
            let url = format!("{}/Users?filter=userName%20eq%20%22user{n}%40acme.test%22", scim.base);
            let body: Value = scim.http.get(url).bearer_auth(&scim.token).send().await.unwrap().json().await.unwrap();
            assert_eq!(body["totalResults"], 1, "{body}");
        }
    })
    .await;
    report(&format!("GET /Users?filter=userName eq (at {users} users)"), lookups, found);
    println!("RSS after the push: {:.0} MiB", rss_mib(pid));
}
