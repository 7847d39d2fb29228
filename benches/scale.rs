//! Scale benchmark: ssogate on a store of 100,000 organizations (one connection and one
//! application each), 1,000,000 users, 10,000,000 group memberships and 1,000,000 live
//! sessions, beside the same measures at 10 organizations in the same run, on SQLite
//! and on PostgreSQL.
//!
//! The store is filled through SQL from one organization set up through the admin API
//! and one real sign-in, so every row is a copy of what ssogate itself wrote (with ids,
//! names and sealed secrets of its own). ssogate is then restarted on it and measured:
//! start-up to ready and RSS; the admin API's list pages (p50 and p99), with the query
//! plans of the statements behind them; ssogate's CPU per returning sign-in to a random
//! organization and per `userinfo`; the group re-sync of the largest organization after
//! a mapping change, with its progress; the refresh sweep, with a backlog due at once
//! and the rest spread over the hour; and RSS after mixed sign-ins across random
//! organizations, per 1,000 organizations that signed in.
//!
//! `cargo bench --bench scale` — knobs: BENCH_ORGS (100000), BENCH_USERS (1000000),
//! BENCH_BIG_ORG_USERS (100000), BENCH_SESSIONS (as many as users), BENCH_SIGN_INS
//! (2000), BENCH_MIXED_SECS (600), BENCH_SWEEP_SECS (120), BENCH_SQLITE=0 (skips
//! SQLite), BENCH_POSTGRES_URL (`none` skips PostgreSQL), BENCH_PIN=0, BENCH_SSOGATE_LOG.

// A benchmark stops at the first failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/fake_op.rs"]
#[allow(dead_code)] // the fault knobs serve the tests, not the benchmark
mod fake_op;
mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use ssogate::core::session::UpstreamTokens;
use ssogate::crypto::SecretBox;
use ssogate::store::Dialect;
use support::floor::PostgresServer;
use support::postgres::{self, Database};
use support::{admin, browser_login, cpu_seconds, env_or, start_ssogate_in, ADMIN, APP};

const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const TEAMS: usize = 10;
/// Rows written per statement while filling (a chunk's WAL stays small).
const CHUNK: u64 = 100_000;
/// Sealed secrets sent per INSERT (two binds each, under SQLite's 32,766).
const SEALED_PER_STATEMENT: usize = 5_000;
const BENCH_DATABASES: &str = "ssogate_bench_scale_";
/// Organizations the comparison of sign-in costs draws from, on the large store.
const WORKING_SET: usize = 2_000;
/// The sessions the fill made (`id_hash` `bench-ses-<index>`), not those of sign-ins.
const COPIED_SESSION: &str = "id_hash LIKE 'bench-ses-%'";

/// How much the store holds. Organization 0 is the large one; the other users are
/// dealt round-robin over the other organizations.
#[derive(Clone, Copy, Debug)]
struct Scale {
    orgs: u64,
    users: u64,
    big_org_users: u64,
    sessions: u64,
}

impl Scale {
    fn small() -> Scale {
        Scale { orgs: 10, users: 100, big_org_users: 10, sessions: 100 }
    }

    fn from_env() -> Scale {
        let users = env_or("BENCH_USERS", 1_000_000);
        let scale = Scale {
            orgs: env_or("BENCH_ORGS", 100_000),
            users,
            big_org_users: env_or("BENCH_BIG_ORG_USERS", 100_000),
            sessions: env_or("BENCH_SESSIONS", users),
        };
        assert!(scale.orgs >= 2 && scale.big_org_users <= scale.users && scale.sessions <= scale.users);
        scale
    }

    /// SQL: the organization of user `n.i`.
    fn org_of_user(&self) -> String {
        format!("(CASE WHEN n.i < {big} THEN 0 ELSE 1 + (n.i - {big}) % {} END)", self.orgs - 1, big = self.big_org_users)
    }

    /// The users of organization `org`.
    fn users_of(&self, org: u64) -> Vec<u64> {
        if org == 0 {
            return (0..self.big_org_users).collect();
        }
        (self.big_org_users + org - 1..self.users).step_by((self.orgs - 1) as usize).collect()
    }

    /// A random organization with users, and one of them.
    fn random_user(&self, rng: &mut impl Rng) -> (u64, u64) {
        loop {
            let org = rng.random_range(0..self.orgs);
            let users = self.users_of(org);
            if !users.is_empty() {
                return (org, users[rng.random_range(0..users.len())]);
            }
        }
    }
}

/// The id of the copy number `index` of the row whose id is `template`: its prefix, a
/// fixed-width number, and the template's last 12 characters (so the copies of two
/// template rows never meet). Sorts before every id ssogate makes.
fn id_of(template: &str, index: u64) -> String {
    let (prefix, ulid) = template.split_once('_').unwrap();
    format!("{prefix}_0000{}{}", index + 1_000_000_000, &ulid[ulid.len() - 12..])
}

/// [`id_of`] in SQL, for the template id in `column` and the index `index`.
fn id_sql(prefix: &str, column: &str, index: &str) -> String {
    format!("'{prefix}_0000' || CAST({index} + 1000000000 AS TEXT) || substr({column}, {}, 12)", prefix.len() + 2 + 14)
}

fn person(user: u64) -> String {
    format!("bench-u{user}")
}

/// The rows one organization set up through the admin API and one sign-in left.
struct Template {
    org: String,
    connection: String,
    app: String,
    client_id: String,
    client_secret: String,
    user: String,
    /// What the audit log says of the user (each copy of them has it too).
    user_action: String,
    session: String,
}

struct Filled {
    dialect: Dialect,
    scale: Scale,
    template: Template,
    url: String,
    dir: Arc<tempfile::TempDir>,
    env: Vec<(&'static str, String)>,
}

async fn columns(db: &AnyPool, dialect: Dialect, table: &str) -> Vec<String> {
    let sql = match dialect {
        Dialect::Sqlite => format!("SELECT name FROM pragma_table_info('{table}')"),
        Dialect::Postgres => format!(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = '{table}' AND table_schema = 'public' \
             ORDER BY ordinal_position"
        ),
    };
    sqlx::query_scalar(&sql).fetch_all(db).await.unwrap()
}

/// Copies the rows of `table` that `template` selects (as `t`) once per row of `source`
/// (as `n`, its index `n.i`), in chunks of the index; `overrides` replace columns.
async fn copy_rows(
    db: &AnyPool,
    dialect: Dialect,
    table: &str,
    template: &str,
    source: &str,
    count: u64,
    overrides: &[(&str, String)],
) -> u64 {
    let columns = columns(db, dialect, table).await;
    for (name, _) in overrides {
        assert!(columns.iter().any(|c| c == name), "{table} has no column {name}");
    }
    let values: Vec<String> =
        columns.iter().map(|c| overrides.iter().find(|(name, _)| name == c).map_or(format!("t.{c}"), |(_, e)| e.clone())).collect();
    let mut copied = 0;
    for lo in (0..count).step_by(CHUNK as usize) {
        let hi = (lo + CHUNK).min(count);
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {table} t, {source} n WHERE ({template}) AND n.i >= {lo} AND n.i < {hi}",
            columns.join(", "),
            values.join(", ")
        );
        copied += sqlx::query(&sql).execute(db).await.unwrap().rows_affected();
    }
    copied
}

/// Puts `(i, sealed(i))` for i in 0..count into the staging table `bench_sealed`.
async fn stage_sealed(db: &AnyPool, count: u64, sealed: impl Fn(u64) -> String + Sync) {
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_sealed; CREATE TABLE bench_sealed (i BIGINT PRIMARY KEY, sealed TEXT NOT NULL)")
        .execute(db)
        .await
        .unwrap();
    let all: Vec<u64> = (0..count).collect();
    for chunk in all.chunks(SEALED_PER_STATEMENT) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|k| format!("(${}, ${})", 2 * k + 1, 2 * k + 2)).collect();
        let sql = format!("INSERT INTO bench_sealed (i, sealed) VALUES {}", placeholders.join(", "));
        let mut q = sqlx::query(&sql);
        for &i in chunk {
            q = q.bind(i as i64).bind(sealed(i));
        }
        q.execute(db).await.unwrap();
    }
}

/// Sets up the template organization through the admin API and one sign-in, then
/// copies it to `scale` with ssogate stopped.
async fn fill(op: &fake_op::FakeOp, db: &Database, scale: Scale) -> Filled {
    let http = reqwest::Client::new();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut env: Vec<(&'static str, String)> = vec![("SSOGATE_ENCRYPTION_KEY", KEY.into())];
    if let Some(url) = &db.url {
        env.push(("SSOGATE_DATABASE_URL", url.clone()));
    }
    let url = db.url.clone().unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let dialect = Dialect::from_url(&url).unwrap();
    let template = {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = start_ssogate_in(&http, dir.clone(), &env).await;
        let base = &server.base;
        let org = admin(&http, base, "/organizations", json!({"name": "Template", "slug": "template"})).await;
        let mapping: Vec<String> = (0..TEAMS).map(|k| format!("Team {k} -> team-{k}")).collect();
        let connection = admin(
            &http,
            base,
            "/organizations/template/connections",
            json!({"name": "Fake", "client_id": "bench-client", "client_secret": "fake-secret", "discovery_url": op.issuer,
                   "group_sync": {"enabled": true, "claim": "groups", "mapping": mapping.join(", "), "create_missing_groups": true}}),
        )
        .await;
        let app = admin(&http, base, "/applications", json!({"name": "Bench", "redirect_uris": [APP]})).await;
        let (client_id, client_secret) = (app["client_id"].as_str().unwrap(), app["client_secret"].as_str().unwrap());
        browser_login(&browser, base, client_id, client_secret, "template", Some("bench-template")).await.expect("template sign-in");
        let store = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let user: String = sqlx::query_scalar("SELECT id FROM users WHERE idp_sub = 'bench-template'").fetch_one(&store).await.unwrap();
        let session: String = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1").bind(&user).fetch_one(&store).await.unwrap();
        let user_action: String =
            sqlx::query_scalar("SELECT action FROM audit_events WHERE target_id = $1").bind(&user).fetch_one(&store).await.unwrap();
        store.close().await;
        Template {
            org: org["id"].as_str().unwrap().into(),
            connection: connection["id"].as_str().unwrap().into(),
            app: app["id"].as_str().unwrap().into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            user,
            user_action,
            session,
        }
    };

    let started = Instant::now();
    let db = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    if dialect == Dialect::Sqlite {
        sqlx::raw_sql(ssogate::store::SQLITE_SETTINGS).execute(&db).await.unwrap();
    }
    let most = scale.users.max(scale.orgs);
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS bench_n; CREATE TABLE bench_n (i BIGINT PRIMARY KEY); \
         WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < {most}) INSERT INTO bench_n (i) SELECT i FROM c"
    ))
    .execute(&db)
    .await
    .unwrap();
    let t = &template;
    let org = |index: &str| id_sql("org", &format!("'{}'", t.org), index);
    let conn = |index: &str| id_sql("conn", &format!("'{}'", t.connection), index);
    let user_org = scale.org_of_user();
    let of_org = format!("t.organization_id = '{}'", t.org);
    let orgs = copy_rows(
        &db,
        dialect,
        "organizations",
        &format!("t.id = '{}'", t.org),
        "bench_n",
        scale.orgs,
        &[("id", org("n.i")), ("name", "'Bench ' || CAST(n.i AS TEXT)".into()), ("slug", "'bench-' || CAST(n.i AS TEXT)".into())],
    )
    .await;
    copy_rows(&db, dialect, "entitlements", &of_org, "bench_n", scale.orgs, &[("organization_id", org("n.i"))]).await;
    let groups = copy_rows(
        &db,
        dialect,
        "groups",
        &of_org,
        "bench_n",
        scale.orgs,
        &[("id", id_sql("grp", "t.id", "n.i")), ("organization_id", org("n.i"))],
    )
    .await;
    let secrets = SecretBox::new(&SecretBox::parse_key(KEY).unwrap());
    stage_sealed(&db, scale.orgs, |i| {
        secrets.encrypt_str(&format!("connection:{}:client_secret", id_of(&t.connection, i)), "fake-secret").unwrap()
    })
    .await;
    copy_rows(
        &db,
        dialect,
        "connections",
        &format!("t.id = '{}'", t.connection),
        "bench_sealed",
        scale.orgs,
        &[("id", conn("n.i")), ("organization_id", org("n.i")), ("client_secret_enc", "n.sealed".into())],
    )
    .await;
    copy_rows(
        &db,
        dialect,
        "applications",
        &format!("t.id = '{}'", t.app),
        "bench_n",
        scale.orgs,
        &[("id", id_sql("app", "t.id", "n.i")), ("client_id", "t.client_id || '-' || CAST(n.i AS TEXT)".into())],
    )
    .await;
    let sub = "'bench-u' || CAST(n.i AS TEXT)";
    let users = copy_rows(
        &db,
        dialect,
        "users",
        &format!("t.id = '{}'", t.user),
        "bench_n",
        scale.users,
        &[
            ("id", id_sql("user", "t.id", "n.i")),
            ("organization_id", org(&user_org)),
            ("connection_id", conn(&user_org)),
            ("email", format!("{sub} || '@fake.test'")),
            ("idp_sub", sub.into()),
            ("username", sub.into()),
        ],
    )
    .await;
    let memberships = copy_rows(
        &db,
        dialect,
        "group_memberships",
        &format!("t.user_id = '{}'", t.user),
        "bench_n",
        scale.users,
        &[("group_id", id_sql("grp", "t.group_id", &user_org)), ("user_id", id_sql("user", &format!("'{}'", t.user), "n.i"))],
    )
    .await;
    let audit = copy_rows(
        &db,
        dialect,
        "audit_events",
        &format!("t.target_id = '{}'", t.user),
        "bench_n",
        scale.users,
        &[
            ("id", id_sql("evt", "t.id", "n.i")),
            ("organization_id", org(&user_org)),
            ("target_id", id_sql("user", &format!("'{}'", t.user), "n.i")),
        ],
    )
    .await;
    let expires_at = ssogate::core::now().unix_timestamp() + 3600;
    stage_sealed(&db, scale.sessions, |i| {
        let who = person(i);
        let tokens = UpstreamTokens {
            access_token: Some(format!("at.{who}.0")),
            refresh_token: Some(format!("rt.{who}.0")),
            expires_at: Some(expires_at),
            nonce: "n".into(),
            ..Default::default()
        };
        let context = format!("session:{}:upstream", id_of(&t.session, i));
        secrets.encrypt_str(&context, &serde_json::to_string(&tokens).unwrap()).unwrap()
    })
    .await;
    let sessions = copy_rows(
        &db,
        dialect,
        "sessions",
        &format!("t.id = '{}'", t.session),
        "bench_sealed",
        scale.sessions,
        &[
            ("id", id_sql("ses", "t.id", "n.i")),
            ("id_hash", "'bench-ses-' || CAST(n.i AS TEXT)".into()),
            ("user_id", id_sql("user", &format!("'{}'", t.user), "n.i")),
            ("organization_id", org(&user_org)),
            ("connection_id", conn(&user_org)),
            ("idp_sub", sub.into()),
            ("upstream_enc", "n.sealed".into()),
            ("refresh_at", "NULL".into()),
        ],
    )
    .await;
    sqlx::raw_sql("DROP TABLE bench_sealed; DROP TABLE bench_n").execute(&db).await.unwrap();
    // PostgreSQL's autovacuum would have analysed tables this size long since; SQLite
    // keeps no statistics unless told, and ssogate does not tell it.
    if dialect == Dialect::Postgres {
        sqlx::raw_sql("VACUUM ANALYZE").execute(&db).await.unwrap();
    }
    db.close().await;
    println!(
        "    filled in {:.0} s: {orgs} organizations (with connections, applications, {groups} groups), {users} users, \
         {memberships} group memberships, {audit} audit entries, {sessions} sessions",
        started.elapsed().as_secs_f64()
    );
    Filled { dialect, scale, template, url, dir, env }
}

/// A line of /proc/<pid>/status in MiB: `VmRSS` (all resident memory) or `RssAnon`
/// (the heap and stacks, without the database file's pages).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix(field)).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    kib / 1024.0
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn anon_mib(pid: u32) -> f64 {
    status_mib(pid, "RssAnon:")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A sample value for a statement's parameter.
enum Sample {
    Text(Option<String>),
    Int(i64),
}

/// The query plans of the statements behind the lists, with sample binds; a plan is
/// marked where it reads a table whole.
async fn query_plans(f: &Filled) {
    use Sample::{Int, Text};
    let db = AnyPoolOptions::new().max_connections(1).connect(&f.url).await.unwrap();
    let t = &f.template;
    let text = |s: String| Text(Some(s));
    let user = || text(id_of(&t.user, f.scale.big_org_users / 2));
    let now = ssogate::core::now().unix_timestamp() * 1000;
    let mut plans = vec![];
    for (name, sql) in ssogate::store::list_statements(f.dialect) {
        let org = || text(id_of(&t.org, 0));
        let samples: Vec<(&str, Vec<Sample>)> = match name {
            "users of an organization" | "groups of an organization" => vec![("", vec![org(), user(), Int(100)])],
            "organizations" | "domains of a page of organizations" => vec![("", vec![text(id_of(&t.org, f.scale.orgs / 2)), Int(100)])],
            "applications" => vec![("", vec![text(id_of(&t.app, f.scale.orgs / 2)), Int(100)])],
            "audit log" => vec![("", vec![org(), text("~".into()), Int(100)])],
            "audit log, one target's entries" => vec![("", vec![org(), user(), text("~".into()), Int(100)])],
            "audit log, one action's entries" => vec![("", vec![org(), text(t.user_action.clone()), text("~".into()), Int(100)])],
            "users of a connection (re-sync)" => vec![("", vec![text(id_of(&t.connection, 0)), user(), Int(200)])],
            "sessions of a user" => vec![("", vec![user()])],
            "due refreshes" => vec![("", vec![Int(now), Int(now + 120_000), Int(64)])],
            other => panic!("no sample binds for the statement {other:?}"),
        };
        for (variant, binds) in samples {
            plans.push((format!("{name}{variant}"), sql.clone(), binds));
        }
    }
    if f.dialect == Dialect::Postgres {
        // The plan a prepared statement may settle on after its fifth run, whatever
        // the values: the sample values here would get a custom plan.
        sqlx::raw_sql("SET plan_cache_mode = force_generic_plan").execute(&db).await.unwrap();
    }
    for (label, sql, binds) in plans {
        let explain = match f.dialect {
            Dialect::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
            Dialect::Postgres => format!("EXPLAIN {sql}"),
        };
        let mut q = sqlx::query(&explain);
        for b in binds {
            q = match b {
                Text(v) => q.bind(v),
                Int(v) => q.bind(v),
            };
        }
        let rows = q.fetch_all(&db).await.unwrap();
        let lines: Vec<String> = rows
            .iter()
            .map(|r| match f.dialect {
                Dialect::Sqlite => r.get::<String, _>("detail"),
                Dialect::Postgres => r.get::<String, _>(0),
            })
            .collect();
        // SQLite's `SCAN <name>` reads a table or index whole, unless `name` is a
        // subquery's rows (a co-routine, bounded by its own LIMIT).
        let subqueries: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("CO-ROUTINE ")).collect();
        let scans_whole = |l: &str| l.strip_prefix("SCAN ").is_some_and(|t| !subqueries.contains(&t.split(' ').next().unwrap_or_default()));
        let whole = lines.iter().any(|l| l.contains("Seq Scan") || scans_whole(l.trim_start()));
        println!("      {label}{}:", if whole { " (reads a whole table!)" } else { "" });
        for line in lines {
            println!("        {line}");
        }
    }
    db.close().await;
}

/// p50 and p99 of `requests` sequential GETs of the paths `path` makes (fewer if they
/// take over half a minute).
async fn list_latency(http: &reqwest::Client, base: &str, label: &str, requests: usize, mut path: impl FnMut(usize) -> String) {
    let mut took = Vec::with_capacity(requests);
    let started = Instant::now();
    for k in 0..requests {
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        let url = format!("{base}/api/v1{}", path(k));
        let started = Instant::now();
        let resp = http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        took.push(started.elapsed());
        assert!(status.is_success(), "{url}: {status} {body}");
        assert!(!body["data"].as_array().is_none_or(Vec::is_empty), "{url} listed nothing");
    }
    took.sort_unstable();
    let cut = if took.len() < requests { format!(" (only {} requests in 30 s)", took.len()) } else { String::new() };
    println!("      {label}: p50 {:.1} ms, p99 {:.1} ms{cut}", ms(percentile(&took, 0.5)), ms(percentile(&took, 0.99)));
}

/// CPU per sign-in, ssogate's and PostgreSQL's, in milliseconds.
struct SignInCost {
    ssogate: f64,
    postgres: Option<f64>,
}

/// ssogate started on a filled store, with the processes whose CPU a phase counts.
struct Running<'a> {
    f: &'a Filled,
    server: support::Server,
    postgres: Option<PostgresServer>,
}

impl<'a> Running<'a> {
    async fn start(f: &'a Filled) -> Running<'a> {
        let env: Vec<(&str, &str)> = f.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = start_ssogate_in(&reqwest::Client::new(), f.dir.clone(), &env).await;
        let postgres = match f.dialect {
            Dialect::Postgres => PostgresServer::of(&f.url).await,
            Dialect::Sqlite => None,
        };
        Running { f, server, postgres }
    }

    fn pid(&self) -> u32 {
        self.server.child.id()
    }

    /// `total` returning sign-ins to random organizations (of `among`, if given), 8
    /// at once, and their cost; printed when `when` says when they ran.
    async fn sign_ins(&self, total: u64, among: Option<Arc<Vec<u64>>>, when: Option<&str>) -> (SignInCost, HashSet<u64>) {
        let (cpu_before, pg_before) = (cpu_seconds(self.pid()), self.postgres.as_ref().map(PostgresServer::cpu));
        let started = Instant::now();
        let (n, orgs, took) = sign_ins(self.f, &self.server.base, total, 8, Arc::new(|| true), among).await;
        let ssogate = (cpu_seconds(self.pid()) - cpu_before) * 1000.0 / n as f64;
        let postgres = self.postgres.as_ref().zip(pg_before).map(|(s, before)| s.cpu().since(&before) * 1000.0 / n as f64);
        if let Some(when) = when {
            println!(
                "    {n} returning sign-ins to {} random organizations, 8 at once, {when}: ssogate {ssogate:.3} ms CPU per \
                 sign-in{}; {:.0} sign-ins/s; time in ssogate p50 {:.1} ms, p99 {:.1} ms",
                orgs.len(),
                postgres.map(|d| format!(" + PostgreSQL {d:.3} ms")).unwrap_or_default(),
                n as f64 / started.elapsed().as_secs_f64(),
                ms(percentile(&took, 0.5)),
                ms(percentile(&took, 0.99)),
            );
        }
        (SignInCost { ssogate, postgres }, orgs)
    }

    /// ssogate's CPU per `userinfo` (µs), from 64 clients for `secs`, with the token of
    /// a sign-in to a random organization.
    async fn userinfo(&self, secs: u64) -> f64 {
        let (t, base) = (&self.f.template, &self.server.base);
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let (org, user) = self.f.scale.random_user(&mut rand::rng());
        let app = format!("{}-{org}", t.client_id);
        let token = browser_login(&browser, base, &app, &t.client_secret, &format!("bench-{org}"), Some(&person(user)))
            .await
            .expect("sign-in")
            .access_token;
        let (_, cpu, failed) = support::hammer(&reqwest::Client::new(), &format!("{base}/oauth2/userinfo"), &token, self.pid(), secs).await;
        assert_eq!(failed, 0, "every userinfo answered");
        cpu
    }
}

/// Whether a phase of sign-ins goes on.
type GoOn = Arc<dyn Fn() -> bool + Send + Sync>;

fn until(deadline: Instant) -> GoOn {
    Arc::new(move || Instant::now() < deadline)
}

/// Returning sign-ins of random people of random organizations (of `among`, if
/// given), `concurrency` at once, each to its organization's application, for
/// `total` sign-ins or while `go_on`; returns the count, the organizations signed in
/// to and the time each spent in ssogate, sorted.
async fn sign_ins(
    f: &Filled,
    base: &str,
    total: u64,
    concurrency: u64,
    go_on: GoOn,
    among: Option<Arc<Vec<u64>>>,
) -> (u64, HashSet<u64>, Vec<Duration>) {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new((HashSet::new(), Vec::new())));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (browser, base, done, seen, scale, among, go_on) =
                (browser.clone(), base.to_owned(), done.clone(), seen.clone(), f.scale, among.clone(), go_on.clone());
            let (client_id, secret) = (f.template.client_id.clone(), f.template.client_secret.clone());
            tokio::spawn(async move {
                while done.fetch_add(1, Ordering::Relaxed) < total && go_on() {
                    let (org, user) = match &among {
                        Some(orgs) => {
                            let mut rng = rand::rng();
                            let org = orgs[rng.random_range(0..orgs.len())];
                            let people = scale.users_of(org);
                            (org, people[rng.random_range(0..people.len())])
                        }
                        None => scale.random_user(&mut rand::rng()),
                    };
                    let app = format!("{client_id}-{org}");
                    let login =
                        browser_login(&browser, &base, &app, &secret, &format!("bench-{org}"), Some(&person(user))).await.expect("sign-in");
                    let mut seen = seen.lock().unwrap();
                    seen.0.insert(org);
                    seen.1.push(login.in_ssogate);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (orgs, mut took) = std::mem::take(&mut *seen.lock().unwrap());
    took.sort_unstable();
    (took.len() as u64, orgs, took)
}

/// The group re-sync of the largest organization after a mapping change: how long,
/// its progress as the job reports it, and how sign-ins fare beside it (on SQLite
/// each batch holds the one writer).
async fn resync(http: &reqwest::Client, base: &str, f: &Filled) {
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let beside: GoOn = {
        let running = running.clone();
        Arc::new(move || running.load(Ordering::Relaxed))
    };
    let connection = id_of(&f.template.connection, 0);
    let mut mapping: Vec<String> = (0..TEAMS - 1).map(|k| format!("Team {k} -> team-{k}")).collect();
    mapping.push(format!("Team {} -> renamed-team", TEAMS - 1));
    let started = Instant::now();
    let sign_ins_beside = sign_ins(f, base, u64::MAX, 4, beside, None);
    let resync =
        async {
            let resp = http
        .patch(format!("{base}/api/v1/connections/{connection}"))
        .bearer_auth(ADMIN)
        .json(&json!({"group_sync": {"enabled": true, "claim": "groups", "mapping": mapping.join(", "), "create_missing_groups": true}}))
        .send()
        .await
        .unwrap();
            assert!(resp.status().is_success(), "mapping change: {}", resp.status());
            let job = loop {
                let jobs: Value = http
                    .get(format!("{base}/api/v1/organizations/bench-0/sync-jobs"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(id) = jobs["data"][0]["id"].as_str() {
                    break id.to_owned();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let mut reported = Instant::now();
            let mut progress = vec![];
            loop {
                let j: Value =
                    http.get(format!("{base}/api/v1/sync-jobs/{job}")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
                let status = j["status"].as_str().unwrap().to_owned();
                if reported.elapsed() >= Duration::from_secs(5) {
                    progress.push(format!("{:.0} s: {}/{}", started.elapsed().as_secs_f64(), j["done"], j["total"]));
                    reported = Instant::now();
                }
                match status.as_str() {
                    "done" => break (j, started.elapsed(), progress),
                    "failed" => panic!("re-sync failed: {j}"),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        };
    let ((j, took, progress), (n, _, beside)) = tokio::join!(
        async {
            let done = resync.await;
            running.store(false, Ordering::Relaxed);
            done
        },
        sign_ins_beside
    );
    println!(
        "    group re-sync of the largest organization ({} users) after a mapping change: {:.1} s (progress: {}); {n} sign-ins \
         to random organizations beside it, 4 at once, spent p50 {:.1} ms, p99 {:.1} ms in ssogate",
        j["total"],
        took.as_secs_f64(),
        if progress.is_empty() { "done before the first report".into() } else { progress.join(", ") },
        ms(percentile(&beside, 0.5)),
        ms(percentile(&beside, 0.99)),
    );
}

/// The refresh sweep over every session: a minute's worth falls due at once (as after
/// an outage of ssogate), the rest spread over the hour. Reports how the backlog
/// drains and how far behind schedule refreshes ran.
async fn sweep(op: &fake_op::FakeOp, f: &Filled, secs: u64) {
    let db = AnyPoolOptions::new().max_connections(1).connect(&f.url).await.unwrap();
    let n = f.scale.sessions as i64;
    let start = ssogate::core::now().unix_timestamp() * 1000;
    let (backlog_from, step) = (start - 60_000, (3_600_000 / n.max(1)).max(1));
    let due = "CAST(substr(id_hash, 11) AS BIGINT)";
    sqlx::query(&format!("UPDATE sessions SET refresh_at = $1 + {due} * $2 WHERE {COPIED_SESSION}"))
        .bind(backlog_from)
        .bind(step)
        .execute(&db)
        .await
        .unwrap();
    vacuum(&db, f.dialect).await;
    let began = ssogate::core::now().unix_timestamp() * 1000;
    let mut per_second = vec![];
    let mut last = op.refresh_count();
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = op.refresh_count();
        per_second.push(now - last);
        last = now;
    }
    // Behind schedule: after it fell due, or, for the backlog, after the sweep began.
    let lag: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT refreshed_at - CASE WHEN $1 + {due} * $2 > $3 THEN $1 + {due} * $2 ELSE $3 END FROM sessions \
         WHERE refreshed_at IS NOT NULL AND {COPIED_SESSION} ORDER BY 1"
    ))
    .bind(backlog_from)
    .bind(step)
    .bind(began)
    .fetch_all(&db)
    .await
    .unwrap();
    let failed: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM sessions WHERE refresh_error IS NOT NULL AND {COPIED_SESSION}"))
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    let backlog = 60_000 / step;
    let cleared = lag.len() as i64 >= backlog;
    let peak = per_second.iter().max().copied().unwrap_or(0);
    let tail = &per_second[per_second.len() / 2..];
    let steady = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
    println!(
        "    refresh sweep over {n} sessions, {backlog} due at once and the rest spread over the hour ({:.0} due per second), \
         watched {secs} s: peak {peak} refreshes/s, {steady:.0}/s over the second half; {} refreshed, {} ms behind schedule \
         (after falling due, or for the backlog after the sweep began) at the median and {} ms at p99{}; {failed} failed",
        1000.0 / step as f64,
        lag.len(),
        lag.get(lag.len() / 2).copied().unwrap_or(0),
        lag.get(lag.len() * 99 / 100).copied().unwrap_or(0),
        if cleared { "" } else { " (the backlog was not cleared in the window)" },
    );
}

/// Everything measured on the large store but the comparison with the small one;
/// ssogate is left running, its caches as the mixed sign-ins left them, with
/// organizations whose settings are cached.
async fn measure<'a>(op: &fake_op::FakeOp, f: &'a Filled) -> (Running<'a>, Arc<Vec<u64>>) {
    let http = reqwest::Client::new();
    let running = Running::start(f).await;
    let (pid, base) = (running.pid(), running.server.base.clone());
    println!("    start-up to ready: {:.2} s; RSS {:.0} MiB", running.server.ready_after.as_secs_f64(), rss_mib(pid));

    let (t, scale) = (&f.template, f.scale);
    let big_user = id_of(&t.user, scale.big_org_users / 2);
    println!("    admin API list pages (100 per page, 200 requests each, one at a time):");
    let mut rng = rand::rng();
    let mut randoms: Vec<u64> = (0..200).map(|_| rng.random_range(0..scale.big_org_users)).collect();
    list_latency(&http, &base, "users of the largest organization, first page", 200, |_| "/organizations/bench-0/users?limit=100".into())
        .await;
    list_latency(&http, &base, "users of the largest organization, a random page", 200, |k| {
        format!("/organizations/bench-0/users?limit=100&cursor={}", id_of(&t.user, randoms[k].saturating_sub(100)))
    })
    .await;
    let small_orgs: Vec<u64> = (0..200).map(|_| rng.random_range(1..scale.orgs)).collect();
    list_latency(&http, &base, "users of a random small organization", 200, |k| {
        format!("/organizations/bench-{}/users?limit=100", small_orgs[k])
    })
    .await;
    list_latency(&http, &base, "audit log of the largest organization, newest page", 200, |_| {
        "/organizations/bench-0/events?limit=100".into()
    })
    .await;
    list_latency(&http, &base, "audit log of the largest organization, a random page", 200, |k| {
        // Newest first: the entries of the people before this one.
        format!("/organizations/bench-0/events?limit=100&cursor=evt_0000{}", randoms[k] + 100 + 1_000_000_000)
    })
    .await;
    list_latency(&http, &base, "audit log of the largest organization, one person's entries", 200, |k| {
        format!("/organizations/bench-0/events?limit=100&target_id={}", id_of(&t.user, randoms[k]))
    })
    .await;
    list_latency(&http, &base, "audit log of the largest organization, one action's entries, a random page", 200, |k| {
        format!("/organizations/bench-0/events?limit=100&action={}&cursor=evt_0000{}", t.user_action, randoms[k] + 100 + 1_000_000_000)
    })
    .await;
    list_latency(&http, &base, "groups of the largest organization", 200, |_| "/organizations/bench-0/groups?limit=100".into()).await;
    randoms = (0..200).map(|_| rng.random_range(0..scale.orgs.saturating_sub(100).max(1))).collect();
    list_latency(&http, &base, "organizations, a random page", 200, |k| {
        format!("/organizations?limit=100&cursor={}", id_of(&t.org, randoms[k]))
    })
    .await;
    list_latency(&http, &base, "applications, a random page", 200, |k| {
        format!("/applications?limit=100&cursor={}", id_of(&t.app, randoms[k]))
    })
    .await;
    list_latency(&http, &base, "sessions of a user", 200, |_| format!("/users/{big_user}/sessions")).await;
    println!(
        "    query plans{}:",
        if f.dialect == Dialect::Sqlite { " (SQLite's EXPLAIN QUERY PLAN)" } else { " (EXPLAIN, generic plans)" }
    );
    query_plans(f).await;

    let (rss_at_start, heap_at_start) = (rss_mib(pid), anon_mib(pid));
    let first = "right after start, most organizations' settings not yet cached";
    let (_, mut signed_in_to) = running.sign_ins(env_or("BENCH_SIGN_INS", 2000), None, Some(first)).await;
    resync(&http, &base, f).await;
    sweep(op, f, env_or("BENCH_SWEEP_SECS", 120)).await;
    let secs = env_or("BENCH_MIXED_SECS", 600);
    let (n, orgs, took) = sign_ins(f, &base, u64::MAX, 8, until(Instant::now() + Duration::from_secs(secs)), None).await;
    signed_in_to.extend(&orgs);
    let (rss, heap) = (rss_mib(pid), anon_mib(pid));
    println!(
        "    mixed sign-ins for {secs} s beside the refresh sweep: {n} sign-ins to {} organizations (p99 {:.1} ms in ssogate)",
        orgs.len(),
        ms(percentile(&took, 0.99)),
    );
    println!(
        "    ssogate's memory: after start RSS {rss_at_start:.0} MiB (heap {heap_at_start:.0} MiB); after sign-ins to {} \
         organizations RSS {rss:.0} MiB (heap {heap:.0} MiB): {:.2} MiB of heap per 1,000 organizations (the rest of RSS is \
         the database file's pages SQLite read)",
        signed_in_to.len(),
        (heap - heap_at_start) * 1000.0 / signed_in_to.len() as f64,
    );
    // The refreshes stop, so that ssogate's CPU is the sign-ins' alone again.
    let db = AnyPoolOptions::new().max_connections(1).connect(&f.url).await.unwrap();
    sqlx::query("UPDATE sessions SET refresh_at = NULL").execute(&db).await.unwrap();
    vacuum(&db, f.dialect).await;
    db.close().await;
    // The organizations the comparison signs in to: ones signed in to already.
    let working_set: Vec<u64> = orgs.into_iter().take(WORKING_SET).collect();
    (running, Arc::new(working_set))
}

/// After a bulk update on PostgreSQL, so that autovacuum does not run into what is
/// measured next.
async fn vacuum(db: &AnyPool, dialect: Dialect) {
    if dialect == Dialect::Postgres {
        sqlx::raw_sql("VACUUM ANALYZE sessions").execute(db).await.unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The large store (its caches warm) against the small one, both running: sign-ins
/// and `userinfo` in turns, three rounds each, so the machine's drift falls on both.
async fn compare(small: &Running<'_>, large: &Running<'_>, working_set: Arc<Vec<u64>>) {
    let total = env_or("BENCH_SIGN_INS", 2000);
    let everyone = Arc::new((0..small.f.scale.orgs).collect::<Vec<_>>());
    small.sign_ins(50, None, None).await; // warm-up
    let (mut sign_ins, mut userinfo) = ((vec![], vec![], vec![], vec![]), (vec![], vec![]));
    for _ in 0..3 {
        let sides = [(small, &everyone, &mut sign_ins.0, &mut sign_ins.1), (large, &working_set, &mut sign_ins.2, &mut sign_ins.3)];
        for (running, among, cpu, pg) in sides {
            let (cost, _) = running.sign_ins(total, Some(among.clone()), None).await;
            cpu.push(cost.ssogate);
            pg.extend(cost.postgres);
        }
        userinfo.0.push(small.userinfo(5).await);
        userinfo.1.push(large.userinfo(5).await);
    }
    let both = |small: f64, big: f64| format!("{big:.3} against {small:.3} ({:+.0} %)", (big / small - 1.0) * 100.0);
    let postgres = if sign_ins.1.is_empty() {
        String::new()
    } else {
        format!("; PostgreSQL's CPU per sign-in {} ms", both(median(sign_ins.1), median(sign_ins.3)))
    };
    println!(
        "    at {} organizations (sign-ins to {} organizations signed in to before) against 10, medians of 3 rounds in turns \
         of {total} sign-ins and 5 s of userinfo: \
         ssogate's CPU per sign-in {} ms{postgres}; per userinfo {} µs (target: within +20 %)",
        large.f.scale.orgs,
        working_set.len(),
        both(median(sign_ins.0), median(sign_ins.2)),
        both(median(userinfo.0), median(userinfo.1)),
    );
}

async fn run(op: &fake_op::FakeOp, db: &Database, made: Option<&postgres::Made>, scale: Scale) {
    println!("  {}:", db.name);
    println!("    at 10 organizations:");
    let small = fill(op, db, Scale::small()).await;
    println!("    at {} organizations:", scale.orgs);
    let other = match made {
        Some(made) => Some(made.beside("large").await),
        None => None,
    };
    let large = fill(op, other.as_ref().map_or(db, |(db, _)| db), scale).await;
    let (large, working_set) = measure(op, &large).await;
    let small = Running::start(&small).await;
    compare(&small, &large, working_set).await;
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    let scale = Scale::from_env();
    let op = fake_op::FakeOp::start("bench-client").await;
    let teams: Vec<String> = (0..TEAMS).map(|k| format!("Team {k}")).collect();
    op.set_groups(&teams.iter().map(String::as_str).collect::<Vec<_>>());
    // An hour, as most IdPs issue: a refreshed session is not due again during the run.
    op.set_token_lifetime(Duration::from_secs(3600));
    let placement = if support::pinned() { "ssogate pinned to core 0, load generator and IdP on core 1" } else { "all sharing both cores" };
    println!(
        "ssogate scale benchmark ({} organizations, {} users of which {} in the largest organization, {} sessions; release \
         build; {placement})",
        scale.orgs, scale.users, scale.big_org_users, scale.sessions
    );
    if std::env::var("BENCH_SQLITE").as_deref() != Ok("0") {
        run(&op, &Database { name: "SQLite", url: None }, None, scale).await;
    }
    if let Some((pg, made)) = postgres::fresh(BENCH_DATABASES).await {
        run(&op, &pg, Some(&made), scale).await;
    }
}
