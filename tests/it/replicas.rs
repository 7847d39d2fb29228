//! Several ssogate processes on one PostgreSQL database behind a load balancer, with
//! the real OP (oidc-provider) and the real client (openid-client): a login whose
//! steps land on different replicas, caches that follow another replica's changes at
//! once, a background refresh that runs once, and a seat limit that holds.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::browser::Browser;
use common::eventually;
use common::sso_env::{Env, EnvOptions, APP_REDIRECT};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn two_replicas<'a>() -> EnvOptions<'a> {
    EnvOptions { replicas: 2, ..Default::default() }
}

/// How long a change made through one replica may take to reach the other's caches:
/// the time a notice takes, which is far less. (Without the change feed, caches held
/// configuration for 10 s and tokens for minutes.)
const NOTICE: Duration = Duration::from_secs(3);

async fn bearer_userinfo(base: &str, access_token: &str) -> StatusCode {
    reqwest::Client::new().get(format!("{base}/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_bounces_between_replicas_and_caches_follow_changes_at_once() {
    let env = Env::start(two_replicas()).await;
    let (a, b) = (&env.sso, &env.other_replicas[0]);
    let balancer = env.balancer.as_ref().unwrap();

    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    assert_eq!(signed_in["id_token_claims"]["email"], "alice@acme.test");
    assert_eq!(signed_in["userinfo"]["email"], "alice@acme.test");
    // Each step of the login was served by the other replica than the step before.
    let steps = balancer.served();
    let replica_of = |step: &str| steps.iter().find(|(p, _)| p == step).unwrap_or_else(|| panic!("{step} not served: {steps:?}")).1;
    assert_ne!(replica_of("/oauth2/authorize"), replica_of("/sso/callback"), "{steps:?}");
    assert_ne!(replica_of("/sso/callback"), replica_of("/oauth2/token"), "{steps:?}");
    assert_ne!(replica_of("/oauth2/token"), replica_of("/oauth2/userinfo"), "{steps:?}");

    // Both replicas answer for the token, and now hold it in their caches.
    let token = signed_in["access_token"].as_str().unwrap();
    assert_eq!((bearer_userinfo(&a.base, token).await, bearer_userinfo(&b.base, token).await), (StatusCode::OK, StatusCode::OK));
    let (client_id, secret) = env.app_credentials();
    assert_eq!(env.sso_userinfo_at(b, &client_id, &secret, token).await.0, StatusCode::OK);

    // A secret rotated through A stops working on B at once.
    let app_id = env.app["id"].as_str().unwrap();
    let (s, rotated) = a.post(&format!("/applications/{app_id}/rotate-secret"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap();
    eventually(NOTICE, "B refusing the old secret", || async {
        (env.sso_userinfo_at(b, &client_id, &secret, token).await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(env.sso_userinfo_at(b, &client_id, new_secret, token).await.0, StatusCode::OK);

    // A signing key rotated through A is published by B at once.
    let (s, _) = a.post("/signing-keys/rotate", json!({"alg": "ES256"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, keys) = a.get("/signing-keys").await;
    let active: Vec<Value> = keys.as_array().unwrap().iter().filter(|k| k["active"] == true).map(|k| k["kid"].clone()).collect();
    assert_eq!(active.len(), 2, "one active key per algorithm: {keys}");
    eventually(NOTICE, "B publishing the new key", || async {
        let jwks: Value = reqwest::get(b.url("/oauth2/jwks")).await.unwrap().json().await.unwrap();
        let published: Vec<Value> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
        active.iter().all(|kid| published.contains(kid)).then_some(())
    })
    .await;

    // Sessions revoked through A end the token on B at once (B had it cached).
    let user_id = signed_in["id_token_claims"]["sub"].as_str().unwrap();
    let (s, revoked) = a.delete(&format!("/users/{user_id}/sessions")).await;
    assert_eq!((s, revoked["revoked"].as_u64()), (StatusCode::OK, Some(1)));
    eventually(NOTICE, "B refusing the revoked token", || async {
        (bearer_userinfo(&b.base, token).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // A licence changed through A governs B's sign-ins at once, both ways: B forgets
    // that organization's cached licence by name (B answers the authorize request).
    let at_b = |url: &str| url.replacen(&balancer.base, &b.base, 1);
    let at_b_lands = || async {
        let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
        Browser::new().follow(&at_b(&started.url), APP_REDIRECT).await.0
    };
    assert!(at_b_lands().await.param("code").is_some(), "B has read the licence");
    for (sso, outcome) in [(false, Some("access_denied")), (true, None)] {
        let licence = json!({"sso": sso, "group_sync": true});
        let (s, e) = a.api(reqwest::Method::PUT, "/organizations/acme/entitlements", Some(licence)).await;
        assert_eq!(s, StatusCode::OK, "{e}");
        eventually(NOTICE, "B following the licence", || async { (at_b_lands().await.param("error").as_deref() == outcome).then_some(()) })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_refresh_runs_once_across_replicas() {
    // The OP's access tokens live 6 s; each session is due every 3 s, on whichever
    // replica claims it first.
    let env = Env::start(EnvOptions {
        op: json!({"ttl": {"AccessToken": 6, "IdToken": 60, "RefreshToken": 3600}}),
        sso_args: vec!["--refresh-margin".into(), "3s".into()],
        scopes: Some(json!(["openid", "email", "profile", "offline_access"])),
        ..two_replicas()
    })
    .await;
    let accounts = ["alice", "bob", "dana", "erin"];
    let mut signed_in = vec![];
    for who in accounts {
        signed_in.push(env.login(&Browser::new(), json!({"organization": "acme", "login_hint": who})).await.0.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(11)).await;

    let refreshes: Vec<Value> = reqwest::get(format!("{}/test/refreshes", env.idp.issuer)).await.unwrap().json().await.unwrap();
    for who in accounts {
        let mut at: Vec<i64> = refreshes.iter().filter(|r| r["account"] == who).map(|r| r["at"].as_i64().unwrap()).collect();
        at.sort();
        // About every 3 s since the sign-in: a replica refreshing a session the other
        // just refreshed would show as two refreshes in quick succession (and, with
        // the OP rotating refresh tokens, as a reuse that revokes the grant).
        assert!(at.len() >= 2, "{who}: only {} refreshes in 11 s: {at:?}", at.len());
        assert!(at.windows(2).all(|w| w[1] - w[0] >= 1500), "{who} refreshed twice in a row: {at:?}");
    }
    for s in &signed_in {
        assert!(env.app_userinfo(s).is_ok(), "the session lives on: {s}");
        let sessions = env.sessions_of(s["id_token_claims"]["sub"].as_str().unwrap()).await;
        assert!(sessions[0]["upstream"]["last_error"].is_null(), "{sessions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seat_limit_holds_under_concurrent_logins_on_both_replicas() {
    let env = Arc::new(Env::start(two_replicas()).await);
    let (s, e) = env
        .sso
        .api(reqwest::Method::PUT, "/organizations/acme/entitlements", Some(json!({"sso": true, "group_sync": true, "max_users": 3})))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");

    // The client library runs as a child process the harness waits for: each login
    // gets a thread of its own so that none waits on another.
    let logins = (0..8).map(|i| {
        let env = env.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(env.login(&Browser::new(), json!({"organization": "acme", "login_hint": format!("user{i}")}))).0
        })
    });
    let results: Vec<Result<Value, Value>> = futures_util::future::join_all(logins).await.into_iter().map(Result::unwrap).collect();
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<&Value> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(admitted, 3, "exactly the seats: {results:?}");
    assert!(refused.iter().all(|e| e.to_string().contains("access_denied")), "{refused:?}");
    let served = env.balancer.as_ref().unwrap().served();
    assert!((0..2).all(|r| served.iter().any(|(p, i)| p == "/sso/callback" && *i == r)), "both replicas admitted users");
    let (_, users) = env.sso.get("/organizations/acme/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 3);
    let (_, e) = env.sso.get("/organizations/acme/entitlements").await;
    assert_eq!(e["user_count"], 3);
}
