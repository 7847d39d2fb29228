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

/// Mean seconds per call of `op`, over enough calls to take about half a second.
fn per_call(mut op: impl FnMut()) -> f64 {
    for _ in 0..20 {
        op();
    }
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed().as_secs_f64() < 0.5 {
        op();
        calls += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(calls)
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

/// utime + stime of every PostgreSQL process on this machine (its backends, and the
/// writers and checkpointer that work for them), in seconds.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(super::try_cpu_seconds)
        .sum()
}

/// Seconds of CPU per sign-in for its writes alone: the statements of a returning
/// user's sign-in (as the store sends them: `ssogate::store::sign_in_statements`),
/// replayed `n` times over one connection to ssogate's own database, for the user and
/// application the benchmark signed in with.
pub struct Statements {
    /// The database's own work: on SQLite, the statements through rusqlite (SQLite
    /// called directly, on this thread); on PostgreSQL, its processes' CPU.
    pub database: f64,
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

/// The three writes with their parameters, `$1` first, for replayed sign-in `i`.
struct SignIn {
    writes: [(String, Vec<Bind>); 3],
}

async fn sign_ins(db: &mut sqlx::AnyConnection, dialect: Dialect) -> impl Fn(u32) -> SignIn + Send + 'static {
    use sqlx::Row;
    // The last sign-in's rows, as ssogate wrote them, stand for the replayed ones.
    let last = sqlx::query(
        "SELECT g.application_id, g.redirect_uri, g.user_id, g.scope, g.nonce, g.claims, s.organization_id, s.connection_id, \
         s.idp_sub, s.idp_sid, s.upstream_enc FROM grants g JOIN sessions s ON s.id_hash = g.session_hash ORDER BY g.auth_time DESC LIMIT 1",
    )
    .fetch_one(&mut *db)
    .await
    .unwrap();
    let columns = [
        "application_id",
        "redirect_uri",
        "user_id",
        "scope",
        "nonce",
        "claims",
        "organization_id",
        "connection_id",
        "idp_sub",
        "idp_sid",
        "upstream_enc",
    ];
    let last: std::collections::HashMap<&str, Option<String>> = columns.iter().map(|c| (*c, last.get::<Option<String>, _>(*c))).collect();
    let [refresh, grant, redeem] = ssogate::store::sign_in_statements(dialect);
    let now = ssogate::core::now().unix_timestamp() * 1000;
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    move |i| {
        let text = |column: &str| Bind::Text(last[column].clone());
        let key = |what: &str| Bind::Text(Some(format!("floor-{what}-{run}-{i}")));
        let (s, t) = (|v: &str| Bind::Text(Some(v.to_owned())), |v: i64| Bind::Int(Some(v)));
        SignIn {
            writes: [
                (
                    refresh.clone(),
                    vec![
                        text("connection_id"),
                        text("idp_sub"),
                        s("bench@example.test"),
                        t(1),
                        s("Bench"),
                        Bind::Text(None),
                        Bind::Text(None),
                        Bind::Text(None),
                        s("{}"),
                        t(now),
                        text("organization_id"),
                        t(1),
                    ],
                ),
                (
                    grant.clone(),
                    vec![
                        key("code"),
                        text("application_id"),
                        text("redirect_uri"),
                        text("user_id"),
                        key("session"),
                        text("scope"),
                        text("nonce"),
                        Bind::Text(None),
                        t(now),
                        text("claims"),
                        t(now + 60_000),
                        key("sid"),
                        key("session"),
                        text("user_id"),
                        text("organization_id"),
                        text("connection_id"),
                        t(now),
                        t(now),
                        t(now + 86_400_000),
                        key("sid"),
                        t(now + 86_400_000),
                        t(now),
                        text("idp_sub"),
                        text("idp_sid"),
                        text("upstream_enc"),
                        Bind::Int(None),
                        key("state"),
                        t(now + 600_000),
                    ],
                ),
                (redeem.clone(), vec![key("code"), t(now), key("token"), t(now + 3_600_000)]),
            ],
        }
    }
}

/// A write as sqlx sends it.
fn bound((sql, binds): &(String, Vec<Bind>)) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    binds.iter().fold(sqlx::query(sql.as_str()), |q, b| match b {
        Bind::Text(v) => q.bind(v.clone()),
        Bind::Int(v) => q.bind(*v),
    })
}

pub async fn statements(url: &str, n: u32) -> Statements {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let dialect = if url.starts_with("postgres") { Dialect::Postgres } else { Dialect::Sqlite };
    let mut db = sqlx::AnyConnection::connect(url).await.unwrap();
    if dialect == Dialect::Sqlite {
        // What ssogate sets on each of its connections.
        sqlx::raw_sql(PRAGMAS).execute(&mut db).await.unwrap();
    }
    let sign_in = sign_ins(&mut db, dialect).await;
    let (cpu, pg) = (super::cpu_seconds(std::process::id()), postgres_cpu_seconds());
    for i in 0..n {
        let [refresh, grant, redeem] = sign_in(i).writes;
        assert!(bound(&refresh).fetch_optional(&mut db).await.unwrap().is_some(), "the profile refresh found the benchmark's user");
        match dialect {
            // As ssogate: one transaction, so none of the three lands without the others.
            Dialect::Sqlite => {
                let mut tx = db.begin_with("BEGIN IMMEDIATE").await.unwrap();
                bound(&grant).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            Dialect::Postgres => {
                bound(&grant).execute(&mut db).await.unwrap();
            }
        }
        assert!(bound(&redeem).fetch_optional(&mut db).await.unwrap().is_some(), "the code was redeemed");
    }
    let through_sqlx = (super::cpu_seconds(std::process::id()) - cpu) / f64::from(n);
    let database = match dialect {
        Dialect::Postgres => (postgres_cpu_seconds() - pg) / f64::from(n),
        Dialect::Sqlite => {
            let path = url.trim_start_matches("sqlite://").to_owned();
            tokio::task::spawn_blocking(move || sqlite_itself(&path, n, &sign_in)).await.unwrap()
        }
    };
    db.close().await.ok();
    Statements { database, through_sqlx }
}

const PRAGMAS: &str = "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// The replay through rusqlite: SQLite's own work, on this thread.
fn sqlite_itself(path: &str, n: u32, sign_in: &impl Fn(u32) -> SignIn) -> f64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(PRAGMAS).unwrap();
    // Each statement of a string of several, with its `$N` parameters by number.
    let run = |sql: &str, binds: &[Bind]| -> usize {
        let mut rows = 0;
        for piece in sql.split("; ") {
            let mut stmt = db.prepare_cached(piece).unwrap();
            for index in 1..=stmt.parameter_count() {
                let name = stmt.parameter_name(index).unwrap();
                let number: usize = name.trim_start_matches('$').parse().unwrap();
                match &binds[number - 1] {
                    Bind::Text(v) => stmt.raw_bind_parameter(index, v).unwrap(),
                    Bind::Int(v) => stmt.raw_bind_parameter(index, v).unwrap(),
                }
            }
            let mut answer = stmt.raw_query();
            while answer.next().unwrap().is_some() {
                rows += 1;
            }
        }
        rows
    };
    let started = super::cpu_seconds(std::process::id());
    for i in n..2 * n {
        let [refresh, grant, redeem] = sign_in(i).writes;
        assert_eq!(run(&refresh.0, &refresh.1), 1, "the profile refresh found the benchmark's user");
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        run(&grant.0, &grant.1);
        db.execute_batch("COMMIT").unwrap();
        assert_eq!(run(&redeem.0, &redeem.1), 1, "the code was redeemed");
    }
    (super::cpu_seconds(std::process::id()) - started) / f64::from(n)
}
