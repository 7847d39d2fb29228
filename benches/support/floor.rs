//! The floor of a brokered sign-in: the work no implementation can skip, timed in the
//! same run as ssogate so that the two compare on the day's machine. It is one
//! signature check of the IdP's ID token (RS256, as the fake IdP signs), one signature
//! of ssogate's ID token (RS256 or ES256), and the database's own work for the
//! statements a sign-in needs.

use std::time::Instant;

use ssogate::store::Dialect;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};

/// Seconds per operation of the sign-in's cryptography, with the calls ssogate makes
/// (aws-lc-rs), over a signing input the size of an ID token's.
pub struct Crypto {
    pub rs256_sign: f64,
    pub rs256_verify: f64,
    pub es256_sign: f64,
}

/// CPU seconds of the calling thread so far (`/proc/thread-self/schedstat`: nanoseconds).
pub fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    stat.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
}

/// Mean CPU seconds per call of `op`, over enough calls to take about half a second.
fn per_call(mut op: impl FnMut()) -> f64 {
    for _ in 0..20 {
        op();
    }
    let (started, cpu) = (Instant::now(), thread_cpu_seconds());
    let mut calls = 0u32;
    while started.elapsed().as_secs_f64() < 0.5 {
        op();
        calls += 1;
    }
    (thread_cpu_seconds() - cpu) / f64::from(calls)
}

impl Crypto {
    pub fn measure() -> Crypto {
        let rng = SystemRandom::new();
        let input = vec![b'e'; 800];
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let mut signature = vec![0; rsa.public_modulus_len()];
        let rs256_sign = per_call(|| rsa.sign(&RSA_PKCS1_SHA256, &rng, &input, &mut signature).unwrap());
        let public = rsa.public_key().as_ref().to_vec();
        let rs256_verify = per_call(|| UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public).verify(&input, &signature).unwrap());
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let es256_sign = per_call(|| {
            ec.sign(&rng, &input).unwrap();
        });
        Crypto { rs256_sign, rs256_verify, es256_sign }
    }

    /// Seconds of cryptography per sign-in whose ID token ssogate signs with `alg`.
    pub fn per_sign_in(&self, alg: &str) -> f64 {
        self.rs256_verify + if alg == "ES256" { self.es256_sign } else { self.rs256_sign }
    }
}

/// The PostgreSQL server a connection is served by, seen from this machine: its
/// postmaster and the processes it started (backends, WAL writer, checkpointer...).
pub struct PostgresServer {
    postmaster: u32,
}

/// CPU seconds of a single-threaded process so far, as PostgreSQL's are (`schedstat`,
/// in nanoseconds, is its main thread's).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|p| p.trim().parse().ok())
}

/// CPU seconds by process, of a server's processes at one moment.
pub struct PostgresCpu(std::collections::HashMap<u32, f64>);

impl PostgresServer {
    /// The server behind `url`, if its processes are visible here (not when it runs on
    /// another machine, or in another PID namespace).
    pub async fn of(url: &str) -> Option<PostgresServer> {
        use sqlx::Connection;
        let mut db = sqlx::AnyConnection::connect(url).await.ok()?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut db).await.ok()?;
        let postmaster = parent_of(u32::try_from(backend).ok()?)?;
        db.close().await.ok();
        std::fs::read_to_string(format!("/proc/{postmaster}/comm")).ok()?.trim().eq("postgres").then_some(PostgresServer { postmaster })
    }

    pub fn cpu(&self) -> PostgresCpu {
        let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
        let ours = pids.filter(|&pid| pid == self.postmaster || parent_of(pid) == Some(self.postmaster));
        PostgresCpu(ours.filter_map(|pid| Some((pid, process_cpu_seconds(pid)?))).collect())
    }
}

impl PostgresCpu {
    /// CPU seconds the server spent since `earlier`: each process's growth, counting a
    /// process started meanwhile from zero (one that ended meanwhile is lost).
    pub fn since(&self, earlier: &PostgresCpu) -> f64 {
        self.0.iter().map(|(pid, now)| now - earlier.0.get(pid).copied().unwrap_or(0.0)).sum()
    }
}

/// Seconds of CPU per sign-in for its writes alone: the statements of a returning
/// user's sign-in (as the store sends them: `ssogate::store::sign_in_statements`),
/// replayed `n` times over one connection to ssogate's own database, with the values
/// of the last sign-in the benchmark made, and keys as random as ssogate's.
pub struct Statements {
    /// The database's own work: on SQLite, the statements through rusqlite (SQLite
    /// called directly, on one thread, its CPU only); on PostgreSQL, the CPU of its
    /// server's processes, when they are visible from here.
    pub database: Option<f64>,
    /// This process's CPU with the statements sent through sqlx, as ssogate sends them
    /// (on SQLite that includes SQLite's own work, and sqlx's hand-off of each
    /// statement to a thread of its own).
    pub through_sqlx: f64,
}

/// A statement parameter.
#[derive(Clone)]
enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
}

/// The three writes of one sign-in with their parameters, `$1` first.
type SignIn = [(String, Vec<Bind>); 3];

/// `n` sign-ins' writes, as ssogate would send them for the user of its last sign-in.
async fn sign_ins(db: &mut sqlx::AnyConnection, dialect: Dialect, n: u32) -> Vec<SignIn> {
    use sqlx::Row;
    let last = sqlx::query(
        "SELECT g.application_id, g.redirect_uri, g.user_id, g.scope, g.nonce, g.claims, s.organization_id, s.connection_id, \
         s.idp_sub, s.idp_sid, s.upstream_enc, u.email, u.first_name, u.last_name, u.username, u.picture, u.attributes \
         FROM grants g JOIN sessions s ON s.id_hash = g.session_hash JOIN users u ON u.id = g.user_id \
         ORDER BY g.auth_time DESC LIMIT 1",
    )
    .fetch_one(&mut *db)
    .await
    .unwrap();
    let verified: i64 = sqlx::query_scalar("SELECT email_verified FROM users WHERE id = $1")
        .bind(last.get::<String, _>("user_id"))
        .fetch_one(&mut *db)
        .await
        .unwrap();
    let text = |column: &str| Bind::Text(last.get::<Option<String>, _>(column));
    let t = |v: i64| Bind::Int(Some(v));
    let [refresh, grant, redeem] = ssogate::store::sign_in_statements(dialect);
    let now = ssogate::core::now().unix_timestamp() * 1000;
    (0..n)
        .map(|_| {
            // As ssogate's: hashes of random secrets, and a new session id.
            let hashed = || Bind::Text(Some(ssogate::crypto::hash_secret(&ssogate::crypto::random_token(""))));
            let (code, session, state, token) = (hashed(), hashed(), hashed(), hashed());
            let sid = Bind::Text(Some(ssogate::core::ids::new_id(ssogate::core::ids::IdKind::Session)));
            [
                (
                    refresh.clone(),
                    vec![
                        text("connection_id"),
                        text("idp_sub"),
                        text("email"),
                        t(verified),
                        text("first_name"),
                        text("last_name"),
                        text("username"),
                        text("picture"),
                        text("attributes"),
                        t(now),
                        text("organization_id"),
                        t(1),
                    ],
                ),
                (
                    grant.clone(),
                    vec![
                        code.clone(),
                        text("application_id"),
                        text("redirect_uri"),
                        text("user_id"),
                        session.clone(),
                        text("scope"),
                        text("nonce"),
                        Bind::Text(None),
                        t(now),
                        text("claims"),
                        t(now + 60_000),
                        sid.clone(),
                        session,
                        text("user_id"),
                        text("organization_id"),
                        text("connection_id"),
                        t(now),
                        t(now),
                        t(now + 86_400_000),
                        sid,
                        t(now + 86_400_000),
                        t(now),
                        text("idp_sub"),
                        text("idp_sid"),
                        text("upstream_enc"),
                        Bind::Int(None),
                        state,
                        t(now + 600_000),
                    ],
                ),
                (redeem.clone(), vec![code, t(now), token, t(now + 3_600_000)]),
            ]
        })
        .collect()
}

/// A write as sqlx sends it.
fn bound((sql, binds): &(String, Vec<Bind>)) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    binds.iter().fold(sqlx::query(sql.as_str()), |q, b| match b {
        Bind::Text(v) => q.bind(v.clone()),
        Bind::Int(v) => q.bind(*v),
    })
}

pub async fn statements(url: &str, n: u32, server: Option<&PostgresServer>) -> Statements {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let dialect = if url.starts_with("postgres") { Dialect::Postgres } else { Dialect::Sqlite };
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    if dialect == Dialect::Sqlite {
        sqlx::raw_sql(ssogate::store::SQLITE_SETTINGS).execute(&mut db).await.unwrap();
    }
    let mut replays = sign_ins(&mut db, dialect, 2 * n).await;
    let for_rusqlite = replays.split_off(n as usize);
    let (cpu, pg) = (super::cpu_seconds(std::process::id()), server.map(PostgresServer::cpu));
    for [refresh, grant, redeem] in &replays {
        assert!(bound(refresh).fetch_optional(&mut db).await.unwrap().is_some(), "the profile refresh found the benchmark's user");
        match dialect {
            // As ssogate: one transaction, so none of the three lands without the others.
            Dialect::Sqlite => {
                let mut tx = db.begin_with("BEGIN IMMEDIATE").await.unwrap();
                bound(grant).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            Dialect::Postgres => {
                bound(grant).execute(&mut db).await.unwrap();
            }
        }
        assert!(bound(redeem).fetch_optional(&mut db).await.unwrap().is_some(), "the code was redeemed");
    }
    let through_sqlx = (super::cpu_seconds(std::process::id()) - cpu) / f64::from(n);
    let database = match (dialect, server, pg) {
        (Dialect::Postgres, Some(server), Some(before)) => Some(server.cpu().since(&before) / f64::from(n)),
        (Dialect::Postgres, ..) => None,
        (Dialect::Sqlite, ..) => {
            let path = url.trim_start_matches("sqlite://").to_owned();
            Some(tokio::task::spawn_blocking(move || sqlite_itself(&path, &for_rusqlite)).await.unwrap())
        }
    };
    db.close().await.ok();
    Statements { database, through_sqlx }
}

/// The replay through rusqlite: SQLite's own work, the CPU of this thread.
fn sqlite_itself(path: &str, replays: &[SignIn]) -> f64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(ssogate::store::SQLITE_SETTINGS).unwrap();
    // Each statement of a string of several, with its `$N` parameters by number;
    // the rows it returned, or else the rows it changed.
    let run = |sql: &str, binds: &[Bind], statements: usize| -> Vec<usize> {
        let pieces: Vec<&str> = sql.split("; ").collect();
        assert_eq!(pieces.len(), statements, "one string holds {statements} statements: {sql}");
        pieces
            .into_iter()
            .map(|piece| {
                let mut stmt = db.prepare_cached(piece).unwrap();
                for index in 1..=stmt.parameter_count() {
                    let name = stmt.parameter_name(index).unwrap();
                    let number: usize = name.trim_start_matches('$').parse().unwrap();
                    match &binds[number - 1] {
                        Bind::Text(v) => stmt.raw_bind_parameter(index, v).unwrap(),
                        Bind::Int(v) => stmt.raw_bind_parameter(index, v).unwrap(),
                    }
                }
                let mut rows = 0;
                let mut answer = stmt.raw_query();
                while answer.next().unwrap().is_some() {
                    rows += 1;
                }
                drop(answer);
                if rows == 0 {
                    db.changes() as usize
                } else {
                    rows
                }
            })
            .collect()
    };
    let started = thread_cpu_seconds();
    for [refresh, grant, redeem] in replays {
        assert_eq!(run(&refresh.0, &refresh.1, 1), [1], "the profile refresh found the benchmark's user");
        db.prepare_cached("BEGIN IMMEDIATE").unwrap().execute([]).unwrap();
        assert_eq!(run(&grant.0, &grant.1, 3), [1, 1, 1], "the login state, the session and the code");
        db.prepare_cached("COMMIT").unwrap().execute([]).unwrap();
        assert_eq!(run(&redeem.0, &redeem.1, 1), [1], "the code was redeemed");
    }
    (thread_cpu_seconds() - started) / replays.len() as f64
}
