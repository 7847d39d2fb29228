//! Attacks from the security review (docs/security.md), each performed against the
//! real binary: another tenant's IdP, another tenant's admin, a malicious
//! application, a network attacker and a cross-site page. Each test fails without
//! the defence it names.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::app_backend::AppBackend;
use common::browser::{Browser, Landing};
use common::fake_op::{FakeOp, Fault};
use common::{Options, Ssogate, ADMIN_TOKEN};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use reqwest::StatusCode;
use serde_json::{json, Value};

const APP: &str = "https://app.example.test/cb";

struct Scene {
    sso: Ssogate,
    client_id: String,
    client_secret: String,
    _dir: tempfile::TempDir,
}

async fn scene(opts: Options, app: Value) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), opts).await;
    let mut body = json!({"name": "App", "redirect_uris": [APP]});
    body.as_object_mut().unwrap().extend(app.as_object().unwrap().clone());
    let (s, app) = sso.post("/applications", body).await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    Scene {
        client_id: app["client_id"].as_str().unwrap().into(),
        client_secret: app["client_secret"].as_str().unwrap().into(),
        sso,
        _dir: dir,
    }
}

/// An organization with one connection to `op`, whose redirect URI `op` then accepts
/// (and only it). Returns the connection.
async fn organization(sso: &Ssogate, slug: &str, domains: &[&str], op: &FakeOp) -> Value {
    let (s, org) = sso.post("/organizations", json!({"name": slug, "slug": slug, "domains": domains})).await;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    let body = json!({"name": "IdP", "client_id": "ssogate-client", "client_secret": "fake-secret", "discovery_url": op.issuer});
    let (s, c) = sso.post(&format!("/organizations/{slug}/connections"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    op.register_redirect_uri(c["redirect_uri"].as_str().unwrap());
    c
}

/// The usual scene: an application and an organization `acme` with a fake IdP.
async fn acme() -> (FakeOp, Scene) {
    let op = FakeOp::start("ssogate-client").await;
    let s = scene(Options::default(), json!({})).await;
    organization(&s.sso, "acme", &[], &op).await;
    (op, s)
}

impl Scene {
    fn authorize_url(&self, extra: &str) -> String {
        format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={APP}&response_type=code&scope=openid%20email&state=st-1&nonce=n-1&{extra}",
            self.sso.base, self.client_id
        )
    }

    /// A sign-in in `browser`; the landing at the application.
    async fn sign_in(&self, browser: &Browser, extra: &str) -> Landing {
        browser.follow(&self.authorize_url(extra), APP).await.0
    }

    /// The token endpoint's answer for a code, from `forwarded_for` behind the proxy.
    async fn exchange_from(&self, code: &str, forwarded_for: &str) -> (StatusCode, Value) {
        let r = self
            .sso
            .raw()
            .post(self.sso.url("/oauth2/token"))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("x-forwarded-for", forwarded_for)
            .form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", APP)])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn exchange(&self, code: &str) -> Value {
        let (s, tokens) = self.exchange_from(code, "192.0.2.1").await;
        assert_eq!(s, StatusCode::OK, "{tokens}");
        tokens
    }

    /// Signs in and exchanges the code: the tokens.
    async fn tokens(&self, browser: &Browser, extra: &str) -> Value {
        let landing = self.sign_in(browser, extra).await;
        let code = landing.param("code").unwrap_or_else(|| panic!("no code: {landing:?}"));
        self.exchange(&code).await
    }

    /// The mix-up attacker's preparation: a sign-in of their own (`routing`) up to the
    /// honest IdP; its authorization request without `state`, which carries the
    /// attacker's nonce and PKCE challenge.
    async fn attackers_own_request(&self, routing: &str, honest: &FakeOp) -> String {
        let (at_honest, _) = Browser::new().follow(&self.authorize_url(routing), &honest.issuer).await;
        let Landing::App(at_honest) = at_honest else { panic!("expected the honest IdP: {at_honest:?}") };
        let mut forward = at_honest.clone();
        forward.query_pairs_mut().clear().extend_pairs(at_honest.query_pairs().filter(|(k, _)| k != "state"));
        forward.to_string()
    }

    async fn userinfo(&self, access_token: &str) -> StatusCode {
        self.sso.raw().get(self.sso.url("/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap().status()
    }
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

// ---------------------------------------------------------------- another tenant's IdP

/// RFC 9700 §4.4: the attacker's IdP forwards the victim's browser to the victim's
/// honest IdP (which answers without `iss`) with the attacker's nonce and PKCE
/// challenge but the victim's state. Were the answer taken at a shared redirect URI,
/// ssogate would send the victim's code to the attacker's token endpoint, and the
/// attacker would redeem it in their own login. Each connection's own redirect URI
/// stops it: the answer arrives at the victim connection's URI, for a login started
/// with the attacker's connection.
#[tokio::test]
async fn an_idp_mix_up_cannot_steal_another_tenants_code() {
    let honest = FakeOp::start("ssogate-client").await;
    honest.set_fault(Fault::NoIssParam);
    let attacker_idp = FakeOp::start("ssogate-client").await;
    let s = scene(Options::default(), json!({})).await;
    let victim_conn = organization(&s.sso, "victim", &["victim.test"], &honest).await;
    let attacker_conn = organization(&s.sso, "attacker", &[], &attacker_idp).await;
    assert_ne!(victim_conn["redirect_uri"], attacker_conn["redirect_uri"], "each connection has its own redirect URI");

    // The attacker starts a sign-in of their own through the victim's connection, and
    // keeps its nonce and PKCE challenge.
    let forward = s.attackers_own_request(&format!("connection={}", victim_conn["id"].as_str().unwrap()), &honest).await;
    attacker_idp.set_fault(Fault::MixUp { to: forward });

    // The victim is lured into a sign-in through the attacker's connection.
    let victim = Browser::new();
    let landing = s.sign_in(&victim, &format!("connection={}", attacker_conn["id"].as_str().unwrap())).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");
    assert!(landing.param("error_description").unwrap().contains("mix-up"), "{landing:?}");
    assert!(attacker_idp.codes_received().is_empty(), "the victim's code reached the attacker's token endpoint");
    assert_eq!(honest.token_requests(), 0, "and was redeemed by nobody");
    let (_, users) = s.sso.get("/organizations/victim/users").await;
    assert!(users["data"].as_array().unwrap().is_empty(), "nobody signed in to the victim's organization");
}

/// Connections created before each had its own redirect URI keep the shared one, and
/// are told to move; until they do, an answer there must name its issuer (RFC 9207),
/// which defeats the same mix-up.
#[tokio::test]
async fn the_shared_redirect_uri_takes_only_answers_that_name_their_issuer() {
    let op = FakeOp::start("ssogate-client").await;
    let attacker_idp = FakeOp::start("ssogate-client").await;
    let s = scene(Options::default(), json!({})).await;
    let conn = organization(&s.sso, "legacy", &["legacy.test"], &op).await;
    let attacker_conn = organization(&s.sso, "attacker", &[], &attacker_idp).await;
    let id = conn["id"].as_str().unwrap().to_owned();
    // As the migration leaves a connection that existed before.
    let db = format!("sqlite://{}/ssogate.db", s.sso.dir.display());
    let mut c: sqlx::AnyConnection = {
        sqlx::any::install_default_drivers();
        sqlx::Connection::connect(&db).await.unwrap()
    };
    sqlx::query("UPDATE connections SET shared_redirect_uri = 1").execute(&mut c).await.unwrap();
    drop(c);
    let s = Scene { sso: s.sso.crash_and_restart().await, ..s };
    let shared = s.sso.url("/sso/callback");
    op.register_redirect_uris(&[&shared]);
    attacker_idp.register_redirect_uris(&[&shared]);

    let (_, view) = s.sso.get(&format!("/connections/{id}")).await;
    assert_eq!(view["redirect_uri"], shared);
    assert_eq!(view["own_redirect_uri"], s.sso.url(&format!("/sso/callback/{id}")));
    assert!(view["notice"].as_str().unwrap().contains("RFC 9207"), "{view}");

    // An IdP that names itself: sign-ins work as before.
    let landing = s.sign_in(&Browser::new(), "organization=legacy").await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    // One that does not is refused, with what to do.
    op.set_fault(Fault::NoIssParam);
    let landing = s.sign_in(&Browser::new(), "organization=legacy").await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert!(landing.param("error_description").unwrap().contains("register the connection's own redirect URI"), "{landing:?}");

    // The mix-up through the shared URI: the honest IdP names itself, the login
    // expected the attacker's issuer, and the code goes nowhere.
    op.set_fault(Fault::None);
    let forward = s.attackers_own_request("organization=legacy", &op).await;
    attacker_idp.set_fault(Fault::MixUp { to: forward });
    let landing = s.sign_in(&Browser::new(), &format!("connection={}", attacker_conn["id"].as_str().unwrap())).await;
    assert!(landing.param("error_description").unwrap_or_default().contains("RFC 9207"), "{landing:?}");
    assert!(attacker_idp.codes_received().is_empty(), "the code reached the attacker");

    // Moving to the connection's own URI; there is no way back.
    op.register_redirect_uris(&[view["own_redirect_uri"].as_str().unwrap()]);
    let (st, moved) = s.sso.patch(&format!("/connections/{id}"), json!({"shared_redirect_uri": false})).await;
    assert_eq!(st, StatusCode::OK, "{moved}");
    assert_eq!(moved["redirect_uri"], moved["own_redirect_uri"]);
    assert!(moved.get("notice").is_none());
    op.set_fault(Fault::None);
    let landing = s.sign_in(&Browser::new(), "organization=legacy").await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let back = s.sso.patch(&format!("/connections/{id}"), json!({"shared_redirect_uri": true})).await;
    common::assert_error(&back, 422, "invalid_field", Some("shared_redirect_uri"));
    // An answer for a per-connection login is not taken at the shared URI either.
    let browser = Browser::new();
    let (at_op, _) = browser.follow(&s.authorize_url("organization=legacy"), &op.issuer).await;
    let Landing::App(at_op) = at_op else { panic!() };
    let state = at_op.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let (landing, _) = browser.follow(&format!("{shared}?code=stolen&state={state}&iss={}", op.issuer), APP).await;
    assert!(landing.param("error_description").unwrap_or_default().contains("mix-up"), "{landing:?}");
}

/// OIDC Core §5.7 and the review's finding 2: a first sign-in links to a user created
/// beforehand by email only when the IdP says the address is verified.
#[tokio::test]
async fn a_first_sign_in_does_not_take_over_a_user_by_an_unverified_email() {
    let op = FakeOp::start("ssogate-client").await;
    let s = scene(Options::default(), json!({})).await;
    let conn = organization(&s.sso, "acme", &["fake.test"], &op).await;
    let (st, boss) = s.sso.post("/organizations/acme/users", json!({"email": "boss@fake.test", "groups": ["admin"]})).await;
    assert_eq!(st, StatusCode::CREATED, "{boss}");

    op.set_fault(Fault::UnverifiedEmail);
    let landing = s.sign_in(&Browser::new(), "organization=acme&login_hint=boss").await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");
    let (_, after) = s.sso.get(&format!("/users/{}", boss["id"].as_str().unwrap())).await;
    assert!(after["idp_sub"].is_null(), "the pre-created admin was not linked: {after}");
    assert_eq!(after["role"], "admin");

    // A connection that trusts its IdP's unverified addresses links, deliberately.
    s.sso.patch(&format!("/connections/{}", conn["id"].as_str().unwrap()), json!({"trust_unverified_email": true})).await;
    let landing = s.sign_in(&Browser::new(), "organization=acme&login_hint=boss").await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let (_, after) = s.sso.get(&format!("/users/{}", boss["id"].as_str().unwrap())).await;
    assert_eq!(after["idp_sub"], "boss");
}

/// Finding 3: org A's IdP says `ceo@<org B's domain>` is verified. Applications see
/// it as unverified, unless org A trusts its IdP for any domain; org A can refuse
/// such sign-ins outright.
#[tokio::test]
async fn another_tenants_idp_cannot_vouch_for_an_email_in_our_domain() {
    let op = FakeOp::start("ssogate-client").await;
    let other = FakeOp::start("ssogate-client").await;
    let s = scene(Options::default(), json!({})).await;
    organization(&s.sso, "victim", &["fake.test"], &other).await;
    organization(&s.sso, "attacker", &["attacker.test"], &op).await;

    let id_token = |t: &Value| claims(t["id_token"].as_str().unwrap());
    let signed_in = Browser::new();
    let t = s.tokens(&signed_in, "organization=attacker&login_hint=ceo").await;
    let c = id_token(&t);
    assert_eq!((c["email"].as_str(), c["org_slug"].as_str()), (Some("ceo@fake.test"), Some("attacker")));
    assert_eq!(c["email_verified"], false, "another organization's domain is not vouched for: {c}");
    // The SSO user info endpoint says the same, keeping the IdP's own word apart.
    let r = s
        .sso
        .raw()
        .post(s.sso.url("/oauth2/sso_userinfo"))
        .basic_auth(&s.client_id, Some(&s.client_secret))
        .form(&[("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    let live: Value = r.json().await.unwrap();
    assert_eq!((&live["email_verified"], &live["idp_email_verified"]), (&json!(false), &json!(true)), "{live}");
    // The organization owning the domain: verified.
    let t = s.tokens(&Browser::new(), "organization=victim&login_hint=ceo").await;
    assert_eq!(id_token(&t)["email_verified"], true);

    let (st, _) = s.sso.patch("/organizations/attacker", json!({"email_policy": "require_domains"})).await;
    assert_eq!(st, StatusCode::OK);
    let landing = s.sign_in(&Browser::new(), "organization=attacker&login_hint=ceo").await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert!(landing.param("error_description").unwrap().contains("not in one of your organization's domains"), "{landing:?}");
    // Nor does a session opened before the policy tightened sign in anew.
    let landing = s.sign_in(&signed_in, "organization=attacker&prompt=none").await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");

    s.sso.patch("/organizations/attacker", json!({"email_policy": "any"})).await;
    let t = s.tokens(&Browser::new(), "organization=attacker&login_hint=ceo2").await;
    assert_eq!(id_token(&t)["email_verified"], true, "an organization may trust its IdP for any domain");
    let bad = s.sso.patch("/organizations/attacker", json!({"email_policy": "everything"})).await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", bad.1);
}

// ---------------------------------------------------------------- a malicious client or page

/// Finding 4: wrong secrets sent with a genuine client's id, from the attacker's
/// address, never throttle the genuine client elsewhere; the attacker is throttled.
#[tokio::test]
async fn failed_client_authentications_do_not_lock_out_the_genuine_client() {
    let op = FakeOp::start("ssogate-client").await;
    let opts = Options {
        env: vec![("SSOGATE_RATE_LIMIT_TOKEN".into(), "5".into())],
        extra_args: vec!["--trusted-proxy".into(), "127.0.0.1/32".into()],
        ..Default::default()
    };
    let s = scene(opts, json!({})).await;
    organization(&s.sso, "acme", &[], &op).await;
    let guess = |client_id: String, address: &'static str| {
        s.sso
            .raw()
            .post(s.sso.url("/oauth2/token"))
            .header("x-forwarded-for", address)
            .form(&[("grant_type", "authorization_code"), ("code", "x"), ("client_id", &client_id), ("client_secret", "guess")])
            .send()
    };
    let mut statuses = vec![];
    for _ in 0..25 {
        statuses.push(guess(s.client_id.clone(), "203.0.113.9").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "the guesser is throttled: {statuses:?}");

    // The genuine client, from its own address, is not.
    let landing = s.sign_in(&Browser::new(), "organization=acme").await;
    let (st, tokens) = s.exchange_from(&landing.param("code").unwrap(), "198.51.100.7").await;
    assert_eq!(st, StatusCode::OK, "{tokens}");

    // Unknown client ids from one address are throttled by address.
    let mut statuses = vec![];
    for i in 0..8 {
        statuses.push(guess(format!("client_nobody_{i}"), "203.0.113.10").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
}

/// Finding 6 (OIDC RP-Initiated Logout 1.0 §2): a cross-site link to the logout
/// endpoint does not sign the user out; the user is asked, and the confirmation
/// carries a token only ssogate's page has. An ID token of the session as hint needs
/// no confirmation.
#[tokio::test]
async fn a_cross_site_logout_link_asks_the_user_first() {
    let (_op, s) = acme().await;
    let browser = Browser::new();
    let t = s.tokens(&browser, "organization=acme").await;
    let access = t["access_token"].as_str().unwrap();

    let logout = s.sso.url("/oauth2/logout");
    let (page, _) = browser.follow(&logout, APP).await;
    let Landing::Page(status, html) = page else { panic!("{page:?}") };
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sign out?") && html.contains("name=\"confirm\""), "{html}");
    assert_eq!(s.userinfo(access).await, StatusCode::OK, "still signed in");

    // A forged confirmation, or another session's ID token as hint, is asked again.
    let other = s.tokens(&Browser::new(), "organization=acme&login_hint=someone").await;
    for query in ["confirm=forged".to_owned(), format!("id_token_hint={}", other["id_token"].as_str().unwrap())] {
        let (again, _) = browser.follow(&format!("{logout}?{query}"), APP).await;
        assert!(matches!(&again, Landing::Page(_, h) if h.contains("Sign out?")), "{query}: {again:?}");
    }
    assert_eq!(s.userinfo(access).await, StatusCode::OK);

    // The user confirms.
    let (done, _) = browser.submit_form(&logout, &html, &[], APP).await;
    assert!(matches!(&done, Landing::Page(StatusCode::OK, h) if h.contains("signed out")), "{done:?}");
    assert_eq!(s.userinfo(access).await, StatusCode::UNAUTHORIZED);

    // The application's own hint signs out at once.
    let browser = Browser::new();
    let t = s.tokens(&browser, "organization=acme").await;
    let (done, _) = browser.follow(&format!("{logout}?id_token_hint={}", t["id_token"].as_str().unwrap()), APP).await;
    assert!(matches!(&done, Landing::Page(StatusCode::OK, h) if h.contains("signed out")), "{done:?}");
    assert_eq!(s.userinfo(t["access_token"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED);
}

/// Finding 7 (OIDC Core §3.1.2.1): with a session older than `max_age`, ssogate
/// authenticates the user at the IdP again (passing `max_age` on) and issues the new
/// `auth_time`; with `prompt=none` it answers `login_required`.
#[tokio::test]
async fn max_age_sends_the_user_back_to_the_idp() {
    let (op, s) = acme().await;
    let browser = Browser::new();
    let first = claims(s.tokens(&browser, "organization=acme").await["id_token"].as_str().unwrap());
    assert_eq!(op.authorize_requests().len(), 1);

    // Fresh enough: the session signs in without the IdP.
    let again = claims(s.tokens(&browser, "organization=acme&max_age=3600").await["id_token"].as_str().unwrap());
    assert_eq!((op.authorize_requests().len(), &again["auth_time"]), (1, &first["auth_time"]));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let landing = s.sign_in(&browser, "organization=acme&max_age=1&prompt=none").await;
    assert_eq!(landing.param("error").as_deref(), Some("login_required"), "{landing:?}");
    let fresh = claims(s.tokens(&browser, "organization=acme&max_age=1").await["id_token"].as_str().unwrap());
    let requests = op.authorize_requests();
    assert_eq!(requests.len(), 2, "the IdP was asked again");
    assert_eq!(requests[1].get("max_age").map(String::as_str), Some("1"), "max_age is passed on");
    assert!(fresh["auth_time"].as_i64().unwrap() >= first["auth_time"].as_i64().unwrap() + 2, "{first} {fresh}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(now - fresh["auth_time"].as_i64().unwrap() <= 1 + 1, "auth_time is the new sign-in's");

    // An IdP that ignores max_age (or prompt=login) and reuses an old authentication
    // is caught by its auth_time; the application is never told it was fresh.
    op.set_fault(Fault::StaleAuthTime);
    for routing in ["organization=acme&max_age=60", "organization=acme&prompt=login"] {
        let landing = s.sign_in(&Browser::new(), routing).await;
        assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{routing}: {landing:?}");
        assert!(landing.param("error_description").unwrap().contains("did not authenticate the user again"), "{landing:?}");
    }
    let old = claims(s.tokens(&Browser::new(), "organization=acme").await["id_token"].as_str().unwrap());
    assert!(now - old["auth_time"].as_i64().unwrap() >= 7000, "the IdP's auth_time is passed on: {old}");
}

// ---------------------------------------------------------------- another tenant's admin, the operator

/// Finding 5: deleting a user, a connection or an organization ends the sessions
/// concerned first: their tokens stop at once (not after the token cache's 30 s), and
/// the applications get a back-channel logout.
#[tokio::test]
async fn deleting_a_user_connection_or_organization_ends_their_sessions() {
    let op = FakeOp::start("ssogate-client").await;
    let backend = AppBackend::start().await;
    let s = scene(Options::default(), json!({"backchannel_logout_uri": backend.backchannel_logout_uri})).await;
    let conn = organization(&s.sso, "acme", &[], &op).await;
    organization(&s.sso, "globex", &[], &op).await;

    let signed_in = |hint: &'static str, org: &'static str| {
        let s = &s;
        async move {
            let t = s.tokens(&Browser::new(), &format!("organization={org}&login_hint={hint}")).await;
            let access = t["access_token"].as_str().unwrap().to_owned();
            assert_eq!(s.userinfo(&access).await, StatusCode::OK, "cached now");
            (access, claims(t["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_owned())
        }
    };
    let (access, user_id) = signed_in("ann", "acme").await;
    let (st, _) = s.sso.delete(&format!("/users/{user_id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.userinfo(&access).await, StatusCode::UNAUTHORIZED, "the deleted user's token is dead at once");
    assert_eq!(backend.logout_tokens(1, Duration::from_secs(10)).await.len(), 1, "and the application was told");

    let (access, _) = signed_in("bob", "acme").await;
    let (st, _) = s.sso.delete(&format!("/connections/{}", conn["id"].as_str().unwrap())).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.userinfo(&access).await, StatusCode::UNAUTHORIZED, "a deleted connection's sessions end");
    assert_eq!(backend.logout_tokens(2, Duration::from_secs(10)).await.len(), 2);

    let (access, _) = signed_in("cat", "globex").await;
    let (_, globex) = s.sso.get("/organizations/globex").await;
    let (st, _) = s.sso.delete("/organizations/globex").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.userinfo(&access).await, StatusCode::UNAUTHORIZED, "a deleted organization's sessions end");
    assert_eq!(backend.logout_tokens(3, Duration::from_secs(10)).await.len(), 3);
    for (org, reason) in
        [("acme", "user_deleted"), ("acme", "connection_deleted"), (globex["id"].as_str().unwrap(), "organization_deleted")]
    {
        let (_, events) = s.sso.get(&format!("/organizations/{org}/events?action=session.ended")).await;
        let reasons: Vec<&str> = events["data"].as_array().unwrap().iter().filter_map(|e| e["changes"]["reason"].as_str()).collect();
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
}

/// Finding 8: a console cookie copied before sign-out (with its CSRF token) stops
/// working at once, on every process sharing the database.
#[tokio::test]
async fn console_sign_out_ends_the_session_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    let replica_dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/ssogate.db", dir.path().display());
    let key = std::fs::read_to_string(dir.path().join("ssogate.db.key")).unwrap();
    let replica = Ssogate::start_with(
        replica_dir.path(),
        Options { database_url: Some(database_url), env: vec![("SSOGATE_ENCRYPTION_KEY".into(), key.trim().into())], ..Default::default() },
    )
    .await;
    let r = sso.raw().post(sso.url("/admin/session")).json(&json!({"token": ADMIN_TOKEN})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = r.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_owned();
    let use_copy =
        |at: &Ssogate| at.raw().get(at.url("/api/v1/organizations")).header(COOKIE, &cookie).header("x-csrf-token", &csrf).send();
    assert_eq!(use_copy(&sso).await.unwrap().status(), StatusCode::OK);
    assert_eq!(use_copy(&replica).await.unwrap().status(), StatusCode::OK);

    let out = sso.raw().delete(sso.url("/admin/session")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(use_copy(&sso).await.unwrap().status(), StatusCode::UNAUTHORIZED, "the copied cookie is dead here");
    assert_eq!(use_copy(&replica).await.unwrap().status(), StatusCode::UNAUTHORIZED, "and on the other replica");
}

// ---------------------------------------------------------------- a network attacker

/// Finding 9: `/metrics` accepts the admin token when no metrics token is set, so
/// guessing it costs attempts like the admin API.
#[tokio::test]
async fn guessing_the_token_at_metrics_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let sso =
        Ssogate::start_with(dir.path(), Options { env: vec![("SSOGATE_RATE_LIMIT_ADMIN".into(), "3".into())], ..Default::default() }).await;
    let guess = || sso.raw().get(sso.url("/metrics")).bearer_auth("guess-guess-guess-guess-guess").send();
    for _ in 0..3 {
        assert_eq!(guess().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let limited = guess().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
}

/// Reads until the server closes the connection; how long that took.
fn time_to_close(mut stream: TcpStream, patience: Duration, mut trickle: impl FnMut(&mut TcpStream) -> bool) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
    let mut buf = [0u8; 1024];
    while started.elapsed() < patience {
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return started.elapsed(),
        }
        if !trickle(&mut stream) {
            return started.elapsed();
        }
    }
    panic!("the connection stayed open for {patience:?}");
}

/// Finding 10: a client sending one header line at a time (slowloris), or nothing
/// at all, is cut off after the header read timeout; one address cannot hold more
/// than its share of connections.
#[tokio::test]
async fn slow_headers_idle_connections_and_connection_floods_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--header-read-timeout", "2s", "--max-connections-per-address", "4"].map(String::from).to_vec();
    let sso = Ssogate::start_with(dir.path(), Options { extra_args: args, ..Default::default() }).await;
    let addr = sso.base.trim_start_matches("http://").to_owned();
    let (a, b) = (addr.clone(), addr.clone());
    let (slow, idle) = tokio::task::spawn_blocking(move || {
        let mut sent = 0;
        let slow = TcpStream::connect(&a).unwrap();
        let slow = time_to_close(slow, Duration::from_secs(20), |s| {
            sent += 1;
            let line = if sent == 1 { "GET /healthz HTTP/1.1\r\n".to_owned() } else { format!("x-slow-{sent}: 1\r\n") };
            std::thread::sleep(Duration::from_millis(250));
            s.write_all(line.as_bytes()).is_ok()
        });
        let idle = time_to_close(TcpStream::connect(&b).unwrap(), Duration::from_secs(20), |_| true);
        (slow, idle)
    })
    .await
    .unwrap();
    assert!(slow < Duration::from_secs(5), "slow headers cut off after {slow:?}");
    assert!(idle < Duration::from_secs(5), "an idle connection closed after {idle:?}");

    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let extra = TcpStream::connect(&addr).unwrap();
    let refused = tokio::task::spawn_blocking(move || time_to_close(extra, Duration::from_secs(5), |_| true)).await.unwrap();
    assert!(refused < Duration::from_secs(1), "a fifth connection from the address is closed at once ({refused:?})");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sso.raw().get(sso.url("/healthz")).send().await.unwrap().status(), StatusCode::OK, "freed places serve again");
}

/// Finding 12: IPv6 addresses that carry an IPv4 address are judged by it when a
/// connection is saved (and when a name resolves).
#[tokio::test]
async fn ipv6_addresses_embedding_private_ipv4_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), Options { dev: false, ..Default::default() }).await;
    sso.post("/organizations", json!({"name": "Acme", "slug": "acme"})).await;
    for host in ["[::127.0.0.1]", "[::ffff:0:169.254.169.254]", "[2002:a9fe:a9fe::]", "[2001:0:a9fe:a9fe::]", "[::ffff:10.0.0.1]"] {
        let body = json!({"name": "x", "client_id": "c", "client_secret": "s", "discovery_url": format!("https://{host}/")});
        let got = sso.post("/organizations/acme/connections", body).await;
        common::assert_error(&got, 422, "invalid_field", Some("discovery_url"));
        assert!(got.1["error"]["message"].as_str().unwrap().contains("non-public"), "{host}: {}", got.1);
    }
}

/// Finding 13: ssogate's HTML pages carry the console's security headers, and
/// back-channel logout URIs are held to the same SSRF rules as IdP URLs.
#[tokio::test]
async fn pages_are_hardened_and_application_uris_are_ssrf_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), Options { dev: false, ..Default::default() }).await;
    let page = sso.raw().get(sso.url("/oauth2/authorize?client_id=nobody")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(page.headers()[X_FRAME_OPTIONS], "DENY");

    for uri in ["https://169.254.169.254/latest/meta-data", "https://[::ffff:10.0.0.1]/bcl", "http://app.example.com/bcl"] {
        let got = sso.post("/applications", json!({"name": "A", "redirect_uris": [APP], "backchannel_logout_uri": uri})).await;
        common::assert_error(&got, 422, "invalid_field", Some("backchannel_logout_uri"));
    }
    let got =
        sso.post("/applications", json!({"name": "A", "redirect_uris": [APP], "backchannel_logout_uri": "https://10.1.2.3/bcl"})).await;
    assert!(got.1["error"]["message"].as_str().unwrap().contains("--allow-app-network"), "{}", got.1);
    let ok = sso
        .post("/applications", json!({"name": "A", "redirect_uris": [APP], "backchannel_logout_uri": "https://app.example.com/bcl"}))
        .await;
    assert_eq!(ok.0, StatusCode::CREATED, "{}", ok.1);
}
