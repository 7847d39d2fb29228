//! Brokered login end to end: a real relying party (openid-client) signs in through
//! ssogate, which signs the user in at a real OpenID Provider (oidc-provider).

mod common;

use common::browser::{Browser, Landing};
use common::idp::TestIdp;
use common::rp::RelyingParty;
use common::{free_port, Options, Ssogate};
use reqwest::StatusCode;
use serde_json::{json, Value};

const APP_REDIRECT: &str = "https://app.example.test/callback";
const IDP_SECRET: &str = "ssogate-at-the-idp-secret";

struct Env {
    idp: TestIdp,
    sso: Ssogate,
    rp: RelyingParty,
    connection_id: String,
    _dir: tempfile::TempDir,
}

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.test", "email_verified": true, "given_name": "Alice", "family_name": "Liddell",
                  "preferred_username": "alice.l", "department": "R&D"},
        "bob": {"email": "bob@acme.test", "email_verified": true, "given_name": "Bob"},
    })
}

/// ssogate on a known port, the OP with ssogate registered as its client, one
/// organization `acme` (domain acme.test) with a connection, and one application.
async fn env(provisioning: &str) -> Env {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/sso/callback");
    let idp = TestIdp::start(json!({
        "clients": [{"client_id": "ssogate", "client_secret": IDP_SECRET, "redirect_uris": [callback]}],
        "accounts": accounts(),
    }));
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), Options { port: Some(port), ..Default::default() }).await;
    let (s, _) = sso.post("/organizations", json!({"name": "Acme", "slug": "acme", "domains": ["acme.test"]})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, conn) = sso
        .post(
            "/organizations/acme/connections",
            json!({"name": "Acme IdP", "client_id": "ssogate", "client_secret": IDP_SECRET, "discovery_url": idp.issuer, "provisioning": provisioning}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{conn}");
    let (s, app) = sso.post("/applications", json!({"name": "App", "redirect_uris": [APP_REDIRECT]})).await;
    assert_eq!(s, StatusCode::CREATED);
    let rp = RelyingParty {
        issuer: sso.base.clone(),
        client_id: app["client_id"].as_str().unwrap().into(),
        client_secret: Some(app["client_secret"].as_str().unwrap().into()),
        redirect_uri: APP_REDIRECT.into(),
    };
    Env { idp, connection_id: conn["id"].as_str().unwrap().into(), sso, rp, _dir: dir }
}

impl Env {
    /// One sign-in from the application's point of view.
    async fn login(&self, browser: &Browser, params: Value) -> (Result<Value, Value>, Vec<String>) {
        let started = self.rp.start(params);
        let (landing, visited) = browser.follow(&started.url, APP_REDIRECT).await;
        let callback = landing.app();
        (self.rp.finish(&started, callback.as_str()), visited)
    }

    fn went_to_idp(&self, visited: &[String]) -> bool {
        visited.iter().any(|u| u.starts_with(&self.idp.issuer))
    }
}

#[tokio::test]
async fn jit_login_gives_the_app_a_verified_normalized_profile() {
    let env = env("jit").await;
    let browser = Browser::new();
    let (result, visited) = env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await;
    let result = result.unwrap_or_else(|e| panic!("openid-client refused: {e}"));
    assert!(env.went_to_idp(&visited));
    let claims = &result["id_token_claims"];
    assert!(claims["sub"].as_str().unwrap().starts_with("user_"), "{claims}");
    assert_eq!(claims["iss"], env.sso.base);
    assert_eq!(claims["email"], "alice@acme.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["given_name"], "Alice");
    assert_eq!(claims["family_name"], "Liddell");
    assert_eq!(claims["name"], "Alice Liddell");
    assert_eq!(claims["role"], "end-user");
    assert_eq!(claims["org_slug"], "acme");
    assert_eq!(claims["idp_sub"], "alice");
    assert_eq!(claims["connection_id"], env.connection_id);
    assert_eq!(claims["groups"], json!([]));
    assert!(claims["auth_time"].is_number() && claims["at_hash"].is_string());
    // preferred_username is released by the OP only at its userinfo endpoint.
    assert_eq!(claims["preferred_username"], "alice.l");
    assert_eq!(result["userinfo"]["sub"], claims["sub"]);
    assert_eq!(result["userinfo"]["email"], "alice@acme.test");

    // The user exists in the directory, with the IdP's other claims kept.
    let (_, users) = env.sso.get("/organizations/acme/users").await;
    let user = &users["data"][0];
    assert_eq!(user["id"], claims["sub"]);
    assert_eq!(user["attributes"]["department"], "R&D");
    assert!(user["last_login_at"].is_string());

    // A second application login in the same browser does not go back to the IdP...
    let (again, visited) = env.login(&browser, json!({"organization": "acme"})).await;
    assert!(!env.went_to_idp(&visited), "{visited:?}");
    assert_eq!(again.unwrap()["id_token_claims"]["sub"], claims["sub"]);
    // ...unless the application asks for prompt=login.
    let (forced, visited) = env.login(&browser, json!({"organization": "acme", "prompt": "login", "login_hint": "alice"})).await;
    assert!(env.went_to_idp(&visited));
    assert_eq!(forced.unwrap()["id_token_claims"]["sub"], claims["sub"]);
    // Three logins, one user.
    let (_, users) = env.sso.get("/organizations/acme/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn logins_are_routed_by_email_domain_connection_or_organization() {
    let env = env("jit").await;
    let (r, _) = env.login(&Browser::new(), json!({"login_hint": "bob@acme.test"})).await;
    assert_eq!(r.unwrap()["id_token_claims"]["org_slug"], "acme");
    let (r, _) = env.login(&Browser::new(), json!({"connection": env.connection_id, "login_hint": "bob"})).await;
    assert_eq!(r.unwrap()["id_token_claims"]["email"], "bob@acme.test");
    let (r, _) = env.login(&Browser::new(), json!({"domain_hint": "acme.test"})).await;
    assert!(r.is_ok());

    // Nothing to route by: an OAuth error back at the application, with its state.
    let started = env.rp.start(json!({}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("invalid_request"));
    assert!(landing.param("error_description").unwrap().contains("organization"));
    assert_eq!(landing.param("state").as_deref(), Some(started.state.as_str()));
    let started = env.rp.start(json!({"login_hint": "eve@unknown.test"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert!(landing.param("error_description").unwrap().contains("unknown.test"));
}

#[tokio::test]
async fn existing_users_only_admits_known_people() {
    let env = env("existing_users").await;
    let (s, _) = env.sso.post("/organizations/acme/users", json!({"email": "alice@acme.test", "groups": ["builder"]})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (r, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await;
    let claims = r.unwrap()["id_token_claims"].clone();
    assert_eq!(claims["role"], "builder");
    assert_eq!(claims["given_name"], "Alice");

    let started = env.rp.start(json!({"organization": "acme", "login_hint": "bob"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert!(landing.param("error_description").unwrap().contains("no account"));
    assert_eq!(landing.param("state").as_deref(), Some(started.state.as_str()));
    let (_, users) = env.sso.get("/organizations/acme/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1, "bob must not be created");
}

#[tokio::test]
async fn an_idp_error_reaches_the_app_as_an_oauth_error() {
    let env = env("jit").await;
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "deny"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");
    assert!(landing.param("error_description").unwrap().contains("declined"));
    assert_eq!(landing.param("state").as_deref(), Some(started.state.as_str()));
    // openid-client sees a standard error response.
    let err = env.rp.finish(&started, landing.app().as_str()).unwrap_err();
    assert_eq!(err["oauth_error"], "access_denied", "{err}");
}

#[tokio::test]
async fn a_replayed_code_fails_and_revokes_what_it_issued() {
    let env = env("jit").await;
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    let callback = landing.app();
    let first = env.rp.finish(&started, callback.as_str()).unwrap();
    let access_token = first["access_token"].as_str().unwrap();
    let userinfo = |token: String| {
        let http = reqwest::Client::new();
        let url = env.sso.url("/oauth2/userinfo");
        async move { http.get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(userinfo(access_token.to_owned()).await, StatusCode::OK);
    let replay = env.rp.finish(&started, callback.as_str()).unwrap_err();
    assert_eq!(replay["oauth_error"], "invalid_grant", "{replay}");
    assert_eq!(userinfo(access_token.to_owned()).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_redirect_uri_gets_a_page_not_a_redirect() {
    let env = env("jit").await;
    let started = env.rp.start(json!({"organization": "acme", "redirect_uri": "https://evil.example.test/callback"}));
    let (landing, visited) = Browser::new().follow(&started.url, "https://evil.example.test").await;
    match landing {
        Landing::Page(status, body) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(body.contains("not registered"), "{body}");
        }
        other => panic!("redirected: {other:?}"),
    }
    assert_eq!(visited.len(), 1);
    // An unknown client too.
    let url = env.sso.url("/oauth2/authorize?client_id=nope&redirect_uri=https://app.example.test/callback&response_type=code&scope=openid");
    let (landing, _) = Browser::new().follow(&url, APP_REDIRECT).await;
    assert!(matches!(landing, Landing::Page(StatusCode::BAD_REQUEST, _)));
}

#[tokio::test]
async fn a_tampered_or_reused_state_is_refused() {
    let env = env("jit").await;
    let browser = Browser::new();
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    // Walk to the IdP's answer but stop before ssogate's callback.
    let (landing, _) = browser.follow(&started.url, &format!("{}/sso/callback", env.sso.base)).await;
    let callback = landing.app();
    let tampered = callback.as_str().replace("state=", "state=x");
    let (page, _) = browser.follow(&tampered, APP_REDIRECT).await;
    assert!(matches!(&page, Landing::Page(StatusCode::BAD_REQUEST, b) if b.contains("unknown")), "{page:?}");
    // The genuine answer from another browser (no binding cookie) is refused too...
    let (page, _) = Browser::new().follow(callback.as_str(), APP_REDIRECT).await;
    assert!(matches!(&page, Landing::Page(StatusCode::BAD_REQUEST, _)), "{page:?}");
    // ...and that attempt used the state up: single use.
    let (page, _) = browser.follow(callback.as_str(), APP_REDIRECT).await;
    assert!(matches!(&page, Landing::Page(StatusCode::BAD_REQUEST, b) if b.contains("already")), "{page:?}");
    let (missing, _) = browser.follow(&env.sso.url("/sso/callback?code=abc"), APP_REDIRECT).await;
    assert!(matches!(missing, Landing::Page(StatusCode::BAD_REQUEST, _)));
}

#[tokio::test]
async fn discovery_and_keys_are_published() {
    let env = env("jit").await;
    let http = reqwest::Client::new();
    let d: Value = http.get(env.sso.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["issuer"], env.sso.base);
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    let jwks: Value = http.get(d["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    let algs: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert!(algs.contains(&"RS256") && algs.contains(&"ES256"), "{jwks}");
    assert!(jwks.to_string().find("\"d\"").is_none(), "private key material published");
}
