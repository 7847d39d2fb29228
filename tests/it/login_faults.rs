//! Identity providers that misbehave, from a fake OP: every fault is refused with a
//! clear OAuth error at the application, and valid logins still pass.

use crate::common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::fake_op::{Endpoint, FakeOp, Fault, GroupsElsewhere};
use common::{Options, Ssogate};
use reqwest::StatusCode;
use serde_json::json;

const APP: &str = "https://app.example.test/cb";

struct Env {
    op: FakeOp,
    sso: Ssogate,
    client_id: String,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    env_with(vec![]).await
}

async fn env_with(mut args: Vec<String>) -> Env {
    let op = FakeOp::start("ssogate-client").await;
    let dir = tempfile::tempdir().unwrap();
    args.extend(["--idp-timeout".into(), "2".into()]);
    let sso = Ssogate::start_with(dir.path(), Options { extra_args: args, ..Default::default() }).await;
    add_organization(&sso, "fake", &op).await;
    let (_, app) = sso.post("/applications", json!({"name": "App", "redirect_uris": [APP]})).await;
    Env { op, sso, client_id: app["client_id"].as_str().unwrap().into(), _dir: dir }
}

async fn add_organization(sso: &Ssogate, slug: &str, op: &FakeOp) {
    sso.post("/organizations", json!({"name": slug, "slug": slug})).await;
    let (s, c) = sso
        .post(
            &format!("/organizations/{slug}/connections"),
            json!({"name": "Fake", "client_id": "ssogate-client", "client_secret": "fake-secret", "discovery_url": op.issuer}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
}

impl Env {
    /// Runs a login; returns (error, error_description) or None when a code came back.
    async fn login(&self) -> Option<(String, String)> {
        self.login_to("fake").await
    }

    async fn login_to(&self, organization: &str) -> Option<(String, String)> {
        let url = format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid&state=st-1&nonce=n-1&organization={organization}",
            self.sso.base, self.client_id
        );
        let (landing, _) = Browser::new().follow(&url, APP).await;
        assert_eq!(landing.param("state").as_deref(), Some("st-1"), "{landing:?}");
        match landing.param("error") {
            Some(e) => Some((e, landing.param("error_description").unwrap_or_default())),
            None => {
                assert!(landing.param("code").is_some());
                None
            }
        }
    }
}

/// Tenant-naming labels in `/metrics` are capped: past the first tenants, sign-ins
/// (and their IdP's calls) count together, so a scrape stays bounded.
#[tokio::test]
async fn metrics_label_the_first_tenants_and_count_the_rest_together() {
    let env = env_with(vec!["--metrics-tenant-labels".into(), "1".into()]).await;
    add_organization(&env.sso, "second", &env.op).await;
    assert_eq!(env.login().await, None);
    assert_eq!(env.login_to("second").await, None);
    assert_eq!(env.login_to("second").await, None);
    let text = env.sso.metrics().await;
    let (_, first) = env.sso.get("/organizations/fake").await;
    let first = format!("organization=\"{}\"", first["id"].as_str().unwrap());
    assert_eq!(common::metric(&text, "ssogate_logins_total", &[&first, "outcome=\"success\""]), 1.0, "{text}");
    assert_eq!(common::metric(&text, "ssogate_logins_total", &["organization=\"_other\"", "connection=\"_other\""]), 2.0, "{text}");
    let series = text.lines().filter(|l| l.starts_with("ssogate_logins_total{")).count();
    assert_eq!(series, 2, "one series for the first tenant, one for the rest: {text}");
    // Both organizations' IdP is one host: it has the one host label there is room for.
    assert!(text.lines().any(|l| l.starts_with("ssogate_idp_request_duration_seconds_count{") && l.contains("host=\"127.0.0.1")), "{text}");
}

#[tokio::test]
async fn each_fault_is_refused_with_a_clear_error() {
    let env = env().await;
    assert_eq!(env.login().await, None, "a well-behaved IdP must work");
    let cases = [
        (Fault::BadSignature, "access_denied", "signature"),
        (Fault::AlgNone, "access_denied", "`none` is not allowed"),
        (Fault::Hmac, "access_denied", "`HS256` is not allowed"),
        (Fault::WrongAudience, "access_denied", "aud"),
        (Fault::WrongIssuer, "access_denied", "issuer"),
        (Fault::Expired, "access_denied", "expired"),
        (Fault::NotYetValid, "access_denied", "not valid yet (nbf)"),
        (Fault::NonceMismatch, "access_denied", "nonce"),
        (Fault::UnknownKid, "access_denied", "never-published"),
        (Fault::UserinfoSubMismatch, "access_denied", "userinfo `sub`"),
        (Fault::TokenEndpointFails, "temporarily_unavailable", "HTTP status 500"),
        (Fault::IssParamMismatch, "access_denied", "RFC 9207"),
        (Fault::HugeClaims, "access_denied", "KiB of claims"),
    ];
    for (fault, error, words) in cases {
        env.op.set_fault(fault.clone());
        let (e, description) = env.login().await.unwrap_or_else(|| panic!("{fault:?} was accepted"));
        assert_eq!(e, error, "{fault:?}: {description}");
        assert!(description.contains(words), "{fault:?}: {description}");
    }
    // Nobody was created by a refused login; the one good login made one user.
    let (_, users) = env.sso.get("/organizations/fake/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
    env.op.set_fault(Fault::None);
    assert_eq!(env.login().await, None);

    // Each outcome is counted, by organization, connection and reason.
    let metrics = env.sso.raw().get(env.sso.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED, "metrics name customers: they need a token");
    let text = env.sso.metrics().await;
    assert_eq!(common::metric(&text, "ssogate_logins_total", &["outcome=\"success\""]), 2.0, "{text}");
    assert_eq!(common::metric(&text, "ssogate_logins_total", &["outcome=\"access_denied\""]), 12.0);
    assert_eq!(common::metric(&text, "ssogate_logins_total", &["outcome=\"temporarily_unavailable\""]), 1.0);
    for reason in [
        "bad_signature",
        "algorithm_not_allowed",
        "wrong_audience",
        "wrong_issuer",
        "expired",
        "not_yet_valid",
        "nonce_mismatch",
        "unknown_key",
    ] {
        let n = common::metric(&text, "ssogate_idp_token_rejections_total", &["token=\"id_token\"", &format!("reason=\"{reason}\"")]);
        assert!(n >= 1.0, "{reason}: {text}");
    }
    assert!(common::metric(&text, "ssogate_idp_request_duration_seconds_count", &["host=\"127.0.0.1\"", "outcome=\"ok\""]) > 10.0);
    assert!(common::metric(&text, "ssogate_idp_request_duration_seconds_count", &["outcome=\"error\""]) >= 1.0);
    assert!(common::metric(&text, "ssogate_http_requests_total", &["route=\"/oauth2/authorize\"", "status=\"303\""]) >= 13.0);
    assert!(common::metric(&text, "ssogate_db_pool_connections", &["state=\"idle\""]) >= 1.0);
}

#[tokio::test]
async fn client_secret_post_is_used_when_it_is_all_the_idp_supports() {
    let env = env().await;
    assert_eq!(env.login().await, None, "client_secret_basic by default");
    env.op.set_fault(Fault::PostAuthOnly);
    // The discovery document is cached; a connection change makes ssogate read it again.
    let (_, conns) = env.sso.get("/organizations/fake/connections").await;
    let id = conns["data"][0]["id"].as_str().unwrap().to_owned();
    let other = FakeOp::start("ssogate-client").await;
    other.set_fault(Fault::PostAuthOnly);
    let (s, _) = env.sso.patch(&format!("/connections/{id}"), json!({"discovery_url": other.issuer})).await;
    assert_eq!(s, StatusCode::OK);
    let env = Env { op: other, ..env };
    assert_eq!(env.login().await, None, "client_secret_post when it is all the IdP takes");
}

#[tokio::test]
async fn a_login_state_completes_one_sign_in_only() {
    // The fake IdP, unlike a real one, honours a code twice: ssogate's own single-use
    // state must stop the replay.
    let env = env().await;
    let browser = Browser::new();
    let url = format!(
        "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid&state=st-1&organization=fake",
        env.sso.base, env.client_id
    );
    let (at_callback, _) = browser.follow(&url, &format!("{}/sso/callback", env.sso.base)).await;
    let callback = at_callback.app();
    let sealed = browser.set_cookies.lock().unwrap().iter().find(|c| c.starts_with("ssogate_login_")).cloned().unwrap();
    let (first, _) = browser.follow(callback.as_str(), APP).await;
    assert!(first.param("code").is_some(), "{first:?}");
    let replayer = Browser::new();
    replayer.set_cookie(&env.sso.base, sealed.split(';').next().unwrap());
    let (second, _) = replayer.follow(callback.as_str(), APP).await;
    assert_eq!(second.param("error").as_deref(), Some("access_denied"), "{second:?}");
    assert!(second.param("error_description").unwrap().contains("already completed"));
    assert_eq!(env.op.token_requests(), 2, "the replay did reach the IdP, which accepted it");
}

#[tokio::test]
async fn a_slow_token_endpoint_fails_cleanly_within_the_timeout() {
    let env = env().await;
    env.op.set_fault(Fault::SlowToken(Duration::from_secs(20)));
    let started = Instant::now();
    let (e, description) = env.login().await.expect("a hung IdP must fail the login");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(e, "temporarily_unavailable", "{description}");
    assert!(description.contains("timed out"), "{description}");
}

#[tokio::test]
async fn key_rotation_at_the_idp_just_works() {
    let env = env().await;
    assert_eq!(env.login().await, None);
    env.op.rotate_key("key-2");
    assert_eq!(env.login().await, None, "ssogate must refetch the JWKS for a new kid");
    // A token naming a kid the IdP never published is still refused after the refetch.
    env.op.set_fault(Fault::UnknownKid);
    assert!(env.login().await.is_some());
    assert_eq!(env.op.token_requests(), 3);
}

#[tokio::test]
async fn a_failing_idp_is_cut_off_while_other_tenants_sign_in() {
    let env = env_with(vec!["--idp-circuit-threshold".into(), "3".into(), "--idp-circuit-cooldown".into(), "2s".into()]).await;
    let healthy = FakeOp::start("ssogate-client").await;
    add_organization(&env.sso, "healthy", &healthy).await;
    assert_eq!(env.login().await, None);

    env.op.set_fault(Fault::TokenEndpointFails);
    for _ in 0..3 {
        let (e, description) = env.login().await.unwrap();
        assert_eq!(e, "temporarily_unavailable");
        assert!(description.contains("HTTP status 500"), "{description}");
    }
    let asked = env.op.token_requests();
    // Cut off: the next sign-ins fail at once, without bothering the IdP.
    let started = Instant::now();
    let (e, description) = env.login().await.unwrap();
    assert_eq!(e, "temporarily_unavailable");
    assert!(description.contains("not contacted"), "{description}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(env.op.token_requests(), asked);
    // Another organization's IdP is not affected.
    assert_eq!(env.login_to("healthy").await, None);

    // After the cooldown one trial goes through; the IdP is back, so sign-ins are too.
    env.op.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(env.login().await, None);
    assert_eq!(env.login().await, None);
    let metrics = env.sso.metrics().await;
    assert!(common::metric(&metrics, "ssogate_idp_requests_refused_total", &["why=\"circuit_open\""]) >= 1.0, "{metrics}");
}

#[tokio::test]
async fn an_idp_that_is_down_fails_sign_ins_cleanly_and_they_work_once_it_is_up() {
    let env = env().await;
    let port = common::free_port();
    let (s, _) = env
        .sso
        .patch(&format!("/connections/{}", connection_id(&env).await), json!({"discovery_url": format!("http://127.0.0.1:{port}")}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (e, description) = env.login().await.expect("nothing answers at the IdP's address");
    assert_eq!(e, "temporarily_unavailable", "{description}");
    assert!(description.contains("could not be reached"), "{description}");
    let (_, users) = env.sso.get("/organizations/fake/users").await;
    assert!(users["data"].as_array().unwrap().is_empty(), "nothing was written");
    // The IdP comes up: sign-ins work, with no restart of ssogate.
    let _idp = FakeOp::start_on("ssogate-client", port).await;
    assert_eq!(env.login().await, None);
}

#[tokio::test]
async fn a_sign_in_survives_ssogate_being_killed_while_the_user_is_at_the_idp() {
    let mut env = env().await;
    let url = format!(
        "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid&state=st-9&nonce=n-9&organization=fake",
        env.sso.base, env.client_id
    );
    let browser = Browser::new();
    // The browser is at the IdP when ssogate dies.
    let (at_idp, _) = browser.follow(&url, &env.op.issuer).await;
    env.sso = env.sso.crash_and_restart().await;
    // The login's state travels in the browser's sealed cookie: the restarted
    // process (same database, same key) finishes it.
    let (landing, _) = browser.follow(at_idp.app().as_str(), APP).await;
    assert_eq!(landing.param("state").as_deref(), Some("st-9"));
    assert!(landing.param("code").is_some(), "{landing:?}");
    let (_, users) = env.sso.get("/organizations/fake/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
}

async fn connection_id(env: &Env) -> String {
    let (_, conns) = env.sso.get("/organizations/fake/connections").await;
    conns["data"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_idp_sending_more_groups_than_allowed_is_refused() {
    let env = env_with(vec!["--max-groups-per-user".into(), "1".into()]).await;
    let id = connection_id(&env).await;
    let sync = json!({"group_sync": {"enabled": true, "claim": "groups", "mapping": "", "create_missing_groups": true}});
    assert_eq!(env.sso.patch(&format!("/connections/{id}"), sync).await.0, StatusCode::OK);
    let (e, description) = env.login().await.expect("two groups, one allowed");
    assert_eq!(e, "access_denied");
    assert!(description.contains("2 groups") && description.contains("at most 1"), "{description}");
    let (_, groups) = env.sso.get("/organizations/fake/groups").await;
    assert!(!groups["data"].as_array().unwrap().iter().any(|g| g["name"] == "Engineering"), "no group was created");
    let (_, users) = env.sso.get("/organizations/fake/users").await;
    assert!(users["data"].as_array().unwrap().is_empty(), "nor a user");
}

#[tokio::test]
async fn an_idp_that_moves_an_endpoint_is_followed_without_a_restart() {
    for endpoint in [Endpoint::Token, Endpoint::Userinfo, Endpoint::Jwks] {
        let env = env().await;
        assert_eq!(env.login().await, None, "the discovery document and keys are cached now");
        env.op.set_fault(Fault::Moved(endpoint));
        // New keys at a new address: the cached keys cannot verify the next token.
        if endpoint == Endpoint::Jwks {
            env.op.rotate_key("key-2");
        }
        // The cached address answers 404 (or, for keys, lacks the token's key): ssogate
        // reads discovery again and uses the new address; the code is still unspent.
        assert_eq!(env.login().await, None, "moved {endpoint:?}");
        assert_eq!(env.login().await, None, "moved {endpoint:?}, second sign-in");
    }
}

/// An IdP that carries groups in the ID token and refreshes without a new one (OIDC
/// Core §12.2 allows it): the old ID token's groups are stale, so a refresh takes the
/// groups from userinfo, which tells what they are now.
#[tokio::test]
async fn a_refresh_without_a_new_id_token_takes_the_groups_from_userinfo() {
    let env = env_with(vec!["--refresh-margin".into(), "1s".into()]).await;
    env.op.rotate_refresh_tokens(Duration::from_secs(3));
    env.op.keep_id_token_groups_across_refreshes();
    env.op.set_groups(&["Engineering"]);
    let id = connection_id(&env).await;
    let settings = json!({"scopes": ["openid", "email", "offline_access"],
                          "group_sync": {"enabled": true, "create_missing_groups": true, "mapping": "Engineering -> eng"}});
    assert_eq!(env.sso.patch(&format!("/connections/{id}"), settings).await.0, StatusCode::OK);
    assert_eq!(env.login().await, None);
    let groups = || async {
        let (_, users) = env.sso.get("/organizations/fake/users").await;
        users["data"][0]["groups"].clone()
    };
    assert_eq!(groups().await, json!(["eng"]));
    env.op.set_groups(&["Research"]);
    common::eventually(Duration::from_secs(20), "a refresh to bring the new groups", || async {
        (groups().await == json!(["Research"])).then_some(())
    })
    .await;
    assert!(!env.op.refreshes().is_empty());
}

/// A user in too many groups for a token (Entra ID's group overage; OIDC Core §5.6.2
/// distributed claims): the ID token names a source instead of the groups, and ssogate
/// fetches them with the user's access token — from a Graph `getMemberObjects` call
/// (group ids, mapped by id) or as a JWT the IdP signed. A source that fails leaves the
/// memberships as they were, and the audit log says why.
#[tokio::test]
async fn groups_sent_elsewhere_are_fetched_from_their_source() {
    let env = env().await;
    let id = connection_id(&env).await;
    let sync =
        json!({"group_sync": {"enabled": true, "mapping": "Engineering -> engineers, Sales Team -> sales", "create_missing_groups": true}});
    assert_eq!(env.sso.patch(&format!("/connections/{id}"), sync).await.0, StatusCode::OK);
    let groups = || async {
        let (_, users) = env.sso.get("/organizations/fake/users").await;
        users["data"][0]["groups"].clone()
    };
    for (elsewhere, idp_groups, expected) in [
        (GroupsElsewhere::EntraGraph, vec!["Engineering"], json!(["engineers"])),
        (GroupsElsewhere::SignedJwt, vec!["Engineering", "Sales Team"], json!(["engineers", "sales"])),
    ] {
        env.op.set_groups(&idp_groups);
        env.op.send_groups_elsewhere(elsewhere);
        assert_eq!(env.login().await, None, "{elsewhere:?}");
        assert_eq!(groups().await, expected, "{elsewhere:?}");
    }
    env.op.send_groups_elsewhere(GroupsElsewhere::Broken);
    assert_eq!(env.login().await, None);
    assert_eq!(groups().await, json!(["engineers", "sales"]), "kept");
    let (_, events) = env.sso.get("/organizations/fake/events?action=user.groups_not_synced").await;
    assert!(events["data"][0]["changes"]["reason"].as_str().unwrap().contains("elsewhere"), "{events}");
}

/// ssogate is killed while a group re-sync is half done. The job stays visible as
/// running; once it has made no progress for the stall timeout it is taken up again
/// and finishes, every user synced.
#[tokio::test]
async fn a_sync_job_cut_short_by_a_crash_is_finished_after_the_restart() {
    use ssogate::core::claims::IdpProfile;
    use ssogate::store::{Directory, GroupSyncOf, IdpGroupsSource, Logins, Provisioned, SqlStore};

    const PEOPLE: usize = 3000;
    let op = FakeOp::start("ssogate-client").await;
    let dir = tempfile::tempdir().unwrap();
    // Small batches, so that the crash finds the job under way.
    let extra_args = ["--sync-stall-timeout", "2s", "--sync-batch", "5"].map(String::from).to_vec();
    let sso = Ssogate::start_with(dir.path(), Options { extra_args, ..Default::default() }).await;
    add_organization(&sso, "big", &op).await;
    let (_, connections) = sso.get("/organizations/big/connections").await;
    let connection_id = connections["data"][0]["id"].as_str().unwrap().to_owned();

    // People who signed in while group sync put IdP group Engineering in `end-user`,
    // provisioned and synced through the store (thousands of sign-ins would take minutes).
    let rule = |group: &str| json!({"group_sync": {"enabled": true, "mapping": format!("Engineering -> {group}")}});
    let (s, body) = sso.patch(&format!("/connections/{connection_id}"), rule("end-user")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    common::eventually(Duration::from_secs(20), "the first (empty) job to finish", || async {
        let (_, jobs) = sso.get("/organizations/big/sync-jobs").await;
        (jobs["data"][0]["status"] == "done").then_some(())
    })
    .await;
    let key = ssogate::crypto::SecretBox::parse_key(&std::fs::read_to_string(dir.path().join("ssogate.db.key")).unwrap()).unwrap();
    let url = format!("sqlite://{}/ssogate.db", dir.path().display());
    let store = SqlStore::connect(&url, std::sync::Arc::new(ssogate::crypto::SecretBox::new(&key))).await.unwrap();
    let connection = store.get_connection(&connection_id).await.unwrap().unwrap();
    let said: ssogate::core::claims::Claims = serde_json::from_value(json!({"groups": ["Engineering"]})).unwrap();
    let actor = ssogate::core::audit::Actor("test".into());
    for i in 0..PEOPLE {
        let profile = IdpProfile { idp_sub: format!("person-{i}"), email: Some(format!("person-{i}@big.test")), ..Default::default() };
        let Provisioned::User(user) = store.provision_user(&connection, &profile, ssogate::core::now()).await.unwrap() else {
            panic!("not provisioned")
        };
        let reported = IdpGroupsSource::Reported { id_token: &said, userinfo: None };
        assert_eq!(
            store
                .sync_groups(GroupSyncOf { user_id: &user.user.id, connection_id: &connection_id }, reported, &actor)
                .await
                .unwrap()
                .groups,
            ["end-user"]
        );
    }
    drop(store);

    // The new rule puts Engineering in `builder`: a job re-syncs all of them.
    let (s, body) = sso.patch(&format!("/connections/{connection_id}"), rule("builder")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, jobs) = sso.get("/organizations/big/sync-jobs").await;
    let job_path = format!("/sync-jobs/{}", jobs["data"][0]["id"].as_str().unwrap());
    async fn job(sso: &Ssogate, path: &str) -> serde_json::Value {
        sso.get(path).await.1
    }
    let half_done = common::eventually(Duration::from_secs(60), "the job to be under way", || async {
        let j = job(&sso, &job_path).await;
        let done = j["done"].as_u64().unwrap();
        (j["status"] == "running" && done > 0).then_some(done)
    })
    .await;
    let sso = sso.crash_and_restart().await;
    let after_crash = job(&sso, &job_path).await;
    assert!(half_done < PEOPLE as u64, "the job finished before the crash; give it more people");
    assert_eq!(after_crash["status"], "running", "the interrupted job is shown as it was left: {after_crash}");

    let finished = common::eventually(Duration::from_secs(60), "the job to be taken up again and finish", || async {
        let j = job(&sso, &job_path).await;
        (j["status"] == "done").then_some(j)
    })
    .await;
    assert_eq!((finished["done"].as_u64(), finished["total"].as_u64()), (Some(PEOPLE as u64), Some(PEOPLE as u64)), "{finished}");
    let (mut cursor, mut builders) = (String::new(), 0);
    loop {
        let (_, page) = sso.get(&format!("/organizations/big/users?limit=200&cursor={cursor}")).await;
        for u in page["data"].as_array().unwrap() {
            assert_eq!(u["groups"], json!(["builder"]), "{u}");
            builders += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(builders, PEOPLE, "users lost or duplicated");
}
