//! Interleavings that lost updates or ended sessions wrongly, reproduced on cue (a fake
//! IdP that fails or holds a step when told) on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::fake_op::{FakeOp, Fault};
use common::pg::PgDatabase;
use common::{eventually, Options, Ssogate};
use reqwest::StatusCode;
use serde_json::{json, Value};

const APP: &str = "https://app.example.test/cb";
const KEY: &str = "c3NvZ2F0ZS10ZXN0LXJlcGxpY2Eta2V5LTMyLWJ5dGU=";

struct Scene {
    sso: Ssogate,
    op: FakeOp,
    client_id: String,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// ssogate on SQLite or on a fresh PostgreSQL database, an application, and an
/// organization `acme` whose IdP is a fake one.
async fn scene(postgres: bool, args: &[&str]) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let pg = if postgres { Some(PgDatabase::create().await) } else { None };
    let opts = Options {
        extra_args: args.iter().map(|a| a.to_string()).collect(),
        database_url: pg.as_ref().map(|p| p.url.clone()),
        env: vec![("SSOGATE_ENCRYPTION_KEY".into(), KEY.into())],
        ..Default::default()
    };
    let sso = Ssogate::start_with(dir.path(), opts).await;
    let op = FakeOp::start("ssogate-client").await;
    sso.post("/organizations", json!({"name": "Acme", "slug": "acme", "domains": ["fake.test"]})).await;
    let body = json!({"name": "IdP", "client_id": "ssogate-client", "client_secret": "fake-secret", "discovery_url": op.issuer,
                      "scopes": ["openid", "email", "offline_access"]});
    let (s, c) = sso.post("/organizations/acme/connections", body).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (_, app) = sso.post("/applications", json!({"name": "App", "redirect_uris": [APP]})).await;
    Scene { client_id: app["client_id"].as_str().unwrap().into(), sso, op, _dir: dir, _pg: pg }
}

impl Scene {
    async fn sign_in(&self, hint: &str) -> Value {
        let url = format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid&state=s&organization=acme&login_hint={hint}",
            self.sso.base, self.client_id
        );
        let (landing, _) = Browser::new().follow(&url, APP).await;
        assert!(landing.param("code").is_some(), "{landing:?}");
        let (_, users) = self.sso.get("/organizations/acme/users").await;
        users["data"].as_array().unwrap().iter().find(|u| u["idp_sub"] == hint).cloned().unwrap()
    }

    async fn sessions(&self, user_id: &str) -> Vec<Value> {
        let (_, body) = self.sso.get(&format!("/users/{user_id}/sessions")).await;
        body["data"].as_array().unwrap().clone()
    }
}

/// Finding 1 of the concurrency review: an IdP that rotates refresh tokens (and
/// refuses a spent one) answers a refresh, then its userinfo fails once. The new
/// refresh token must have been kept: the retry uses it and the session lives on.
async fn a_rotated_refresh_token_survives_a_failure_after_it_arrived(postgres: bool) {
    // Tokens live 4 s and are refreshed 1 s early: the first refresh falls due at 3 s.
    let s = scene(postgres, &["--refresh-margin", "1s"]).await;
    s.op.rotate_refresh_tokens(Duration::from_secs(4));
    let user = s.sign_in("rita").await;
    let id = user["id"].as_str().unwrap();
    s.op.set_fault(Fault::UserinfoFailsOnce);
    // The first refresh fails after the IdP rotated the token; the retry (5 s later) succeeds.
    let session = eventually(Duration::from_secs(20), "a refresh after a failed one", || async {
        let sessions = s.sessions(id).await;
        let refreshed = sessions.first().filter(|x| !x["upstream"]["last_refreshed_at"].is_null()).cloned();
        if sessions.is_empty() {
            panic!("the session was ended; refreshes presented {:?}", s.op.refreshes());
        }
        refreshed
    })
    .await;
    let presented = s.op.refreshes();
    assert_eq!(presented[..2], ["rt.rita.0", "rt.rita.1"], "the retry presented the rotated token");
    assert!(session["upstream"]["failing_since"].is_null(), "{session}");
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_failure_after_it_arrived_on_sqlite() {
    a_rotated_refresh_token_survives_a_failure_after_it_arrived(false).await;
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_failure_after_it_arrived_on_postgres() {
    a_rotated_refresh_token_survives_a_failure_after_it_arrived(true).await;
}

/// Finding 4: ten first sign-ins of the same person at once (PostgreSQL runs their
/// lookups before either insert) all succeed, as one user — in a loop of fresh people.
async fn concurrent_first_sign_ins_of_one_person_all_succeed(postgres: bool) {
    let s = scene(postgres, &[]).await;
    for round in 0..5 {
        let hint = format!("twin{round}");
        let url = format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid&state=s&organization=acme&login_hint={hint}",
            s.sso.base, s.client_id
        );
        let landings = futures_util::future::join_all((0..10).map(|_| {
            let url = url.clone();
            async move { Browser::new().follow(&url, APP).await.0 }
        }))
        .await;
        let refused: Vec<_> = landings.iter().filter(|l| l.param("code").is_none()).collect();
        assert!(refused.is_empty(), "round {round}: {refused:?}");
        let (_, users) = s.sso.get("/organizations/acme/users?limit=200").await;
        let same: Vec<&Value> = users["data"].as_array().unwrap().iter().filter(|u| u["idp_sub"] == hint.as_str()).collect();
        assert_eq!(same.len(), 1, "round {round}: one user for one person");
    }
}

#[tokio::test]
async fn concurrent_first_sign_ins_of_one_person_all_succeed_on_sqlite() {
    concurrent_first_sign_ins_of_one_person_all_succeed(false).await;
}

#[tokio::test]
async fn concurrent_first_sign_ins_of_one_person_all_succeed_on_postgres() {
    concurrent_first_sign_ins_of_one_person_all_succeed(true).await;
}
