//! Interleavings that lost updates or ended sessions wrongly, reproduced on cue (a fake
//! IdP that fails or holds a step when told) on SQLite and on PostgreSQL.

use crate::common;

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
    connection_id: String,
    _dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
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
    let connection_id = c["id"].as_str().unwrap().into();
    Scene { client_id: app["client_id"].as_str().unwrap().into(), connection_id, sso, op, _dir: dir, pg }
}

impl Scene {
    fn authorize_url(&self, hint: &str) -> String {
        format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid&state=s&organization=acme&login_hint={hint}",
            self.sso.base, self.client_id
        )
    }

    /// Signs `hint` in through a fresh browser; returns their user.
    async fn sign_in(&self, hint: &str) -> Value {
        let (landing, _) = Browser::new().follow(&self.authorize_url(hint), APP).await;
        assert!(landing.param("code").is_some(), "{landing:?}");
        let (_, users) = self.sso.get("/organizations/acme/users").await;
        users["data"].as_array().unwrap().iter().find(|u| u["idp_sub"] == hint).cloned().unwrap()
    }

    async fn user(&self, id: &str) -> Value {
        self.sso.get(&format!("/users/{id}")).await.1
    }

    /// Turns group sync on (or changes its mapping); returns the re-sync job it queued.
    async fn map_groups(&self, mapping: &str) -> String {
        let body = json!({"group_sync": {"enabled": true, "create_missing_groups": true, "mapping": mapping}});
        let (status, c) = self.sso.patch(&format!("/connections/{}", self.connection_id), body).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        let (_, jobs) = self.sso.get("/organizations/acme/sync-jobs").await;
        jobs["data"][0]["id"].as_str().unwrap().into()
    }

    async fn wait_for_job(&self, id: &str) {
        eventually(Duration::from_secs(20), "the re-sync job to finish", || async {
            let (_, jobs) = self.sso.get("/organizations/acme/sync-jobs").await;
            let job = jobs["data"].as_array().unwrap().iter().find(|j| j["id"] == id).cloned().unwrap();
            assert_ne!(job["status"], "failed", "{job}");
            (job["status"] == "done").then_some(())
        })
        .await
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
        let url = s.authorize_url(&hint);
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

/// Finding 2: a sign-in is held at the IdP's token endpoint while an admin changes
/// the group mapping and its re-sync job finishes, and the IdP's groups change too.
/// When the sign-in goes on, it applies the groups the IdP reports under the mapping
/// as it is when the sign-in commits: not the mapping it started with, and not
/// nothing (which would leave the job's result).
async fn a_sign_in_in_flight_applies_the_current_mapping(postgres: bool) {
    let s = scene(postgres, &[]).await;
    s.op.set_groups(&["Engineering"]);
    s.wait_for_job(&s.map_groups("Engineering -> eng, Research -> research").await).await;
    let user = s.sign_in("gus").await;
    let id = user["id"].as_str().unwrap();
    assert_eq!(s.user(id).await["groups"], json!(["eng"]));
    for round in 0..4 {
        let (old, new) = if round % 2 == 0 { ("eng", "platform") } else { ("platform", "eng") };
        let researcher = round % 2 == 0;
        s.op.set_fault(Fault::HoldTokenUntilReleased);
        let held = s.op.held_token_requests();
        let url = s.authorize_url("gus");
        let sign_in = async { Browser::new().follow(&url, APP).await.0 };
        let remap = async {
            eventually(Duration::from_secs(10), "the sign-in to reach the IdP's token endpoint", || async {
                (s.op.held_token_requests() > held).then_some(())
            })
            .await;
            s.wait_for_job(&s.map_groups(&format!("Engineering -> {new}, Research -> research")).await).await;
            let remapped = s.user(id).await["groups"].clone();
            assert!(remapped.as_array().unwrap().contains(&json!(new)), "round {round}: the re-sync job remapped: {remapped}");
            s.op.set_groups(if researcher { &["Engineering", "Research"] } else { &["Engineering"] });
            s.op.set_fault(Fault::None);
            s.op.release_token();
        };
        let (landing, ()) = tokio::join!(sign_in, remap);
        assert!(landing.param("code").is_some(), "{landing:?}");
        let expected = if researcher { json!([new, "research"]) } else { json!([new]) };
        assert_eq!(s.user(id).await["groups"], expected, "round {round} (the old mapping put {old})");
    }
}

#[tokio::test]
async fn a_sign_in_in_flight_applies_the_current_mapping_on_sqlite() {
    a_sign_in_in_flight_applies_the_current_mapping(false).await;
}

#[tokio::test]
async fn a_sign_in_in_flight_applies_the_current_mapping_on_postgres() {
    a_sign_in_in_flight_applies_the_current_mapping(true).await;
}

/// Finding 3, on PostgreSQL: the test holds the row of the first user a re-sync job
/// reaches, so the job waits there with its page of users already read; meanwhile
/// the second user signs in with new IdP groups. When the job goes on, it must
/// resolve that user's groups from what the sign-in stored, not from its page.
/// (SQLite has no row locks to pause a job with: there every sync runs in one
/// `BEGIN IMMEDIATE` transaction that reads the user's IdP groups itself, which
/// tests/it/store.rs checks, so a page read earlier is never written back.)
#[tokio::test]
async fn a_re_sync_job_never_writes_back_stale_idp_groups_on_postgres() {
    use sqlx::Connection;
    let s = scene(true, &[]).await;
    s.op.set_groups(&["Engineering"]);
    s.wait_for_job(&s.map_groups("Engineering -> eng, Research -> research").await).await;
    let first = s.sign_in("yan").await;
    let second = s.sign_in("xavi").await;
    let (first, second) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    assert!(first < second, "the job takes users in id order");

    let url = s.pg.as_ref().unwrap().url.clone();
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    let watcher = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("BEGIN; SELECT id FROM users WHERE id = '{first}' FOR UPDATE")).execute(&mut holder).await.unwrap();
    let job = s.map_groups("Engineering -> platform, Research -> research").await;
    eventually(Duration::from_secs(10), "the job to wait for the first user's row", || {
        let watcher = watcher.clone();
        async move {
            let waiting: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
                    .fetch_one(&watcher)
                    .await
                    .unwrap();
            (waiting > 0).then_some(())
        }
    })
    .await;
    s.op.set_groups(&["Research"]);
    s.sign_in("xavi").await;
    assert_eq!(s.user(second).await["groups"], json!(["research"]));
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    s.wait_for_job(&job).await;

    let (first, second) = (s.user(first).await, s.user(second).await);
    assert_eq!(first["groups"], json!(["platform"]), "the job went on with the first user");
    assert_eq!(second["idp_groups"], json!([{"name": "Research"}]), "the job wrote back its stale page");
    assert_eq!(second["groups"], json!(["research"]));
}
