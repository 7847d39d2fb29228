//! The tokens applications hold after a sign-in: refresh tokens (`offline_access`,
//! RFC 6749 §6, rotated with reuse detection per RFC 9700 §4.14.2), revocation
//! (RFC 7009), introspection by resource servers (RFC 7662) and JWT access tokens
//! (RFC 9068), each driven by real client libraries: openid-client and oauth4webapi
//! (npm) and Authlib (PyPI), against the real binary and a real upstream OP.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::browser::{Browser, Landing};
use crate::common::rp::Library;
use crate::common::sso_env::{Env, EnvOptions};

const OFFLINE: &str = "openid profile email groups offline_access";
/// The API the application's access tokens are for.
const API: &str = "https://api.acme.test";

/// A resource server for `audience`, as (client_id, secret).
async fn resource_server(env: &Env, audience: &str) -> (String, Option<String>) {
    register(env, json!({"name": format!("API {audience}"), "client_type": "resource_server", "access_token_audience": audience})).await
}

async fn env_with_app(app: Value) -> Env {
    Env::start(EnvOptions { app, ..Default::default() }).await
}

/// Signs `login_hint` in through the app's openid-client, asking for `offline_access`.
async fn sign_in(env: &Env, login_hint: &str) -> Value {
    let (result, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": login_hint, "scope": OFFLINE})).await;
    result.unwrap_or_else(|e| panic!("openid-client refused the sign-in: {e}"))
}

async fn userinfo_status(env: &Env, access_token: &str) -> StatusCode {
    env.sso.raw().get(env.sso.url("/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap().status()
}

/// A registered application's credentials (client_id, secret).
async fn register(env: &Env, app: Value) -> (String, Option<String>) {
    let (s, app) = env.sso.post("/applications", app).await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    (app["client_id"].as_str().unwrap().into(), app["client_secret"].as_str().map(str::to_owned))
}

fn oauth_error(refused: &Value) -> &str {
    refused["oauth_error"].as_str().unwrap_or_else(|| panic!("no OAuth error in {refused}"))
}

/// Each library refreshes: the refresh token is rotated, the ID token (validated by
/// the library) carries the groups an admin gave the user since sign-in, and the
/// replaced access token stops working. Then the first refresh token, presented
/// again, is reuse: the whole family is revoked, the current refresh token included.
#[tokio::test]
async fn refresh_rotates_carries_current_groups_and_reuse_revokes_the_family() {
    let env = env_with_app(json!({})).await;
    for library in [Library::OpenidClient, Library::Oauth4webapi, Library::Authlib] {
        let rp = env.rp.with_library(library);
        let signed_in = sign_in(&env, "alice").await;
        let first = signed_in["refresh_token"].as_str().expect("offline_access gives a refresh token").to_owned();
        let user_id = signed_in["id_token_claims"]["sub"].as_str().unwrap().to_owned();
        assert_eq!(signed_in["id_token_claims"]["role"], "end-user");
        let (s, body) = env.sso.patch(&format!("/users/{user_id}"), json!({"groups": ["admin"]})).await;
        assert_eq!(s, StatusCode::OK, "{body}");

        let refreshed = rp.run("refresh", json!({"refresh_token": first})).unwrap_or_else(|e| panic!("{library:?} refused: {e}"));
        let claims = &refreshed["id_token_claims"];
        assert_eq!((claims["sub"].as_str(), claims["role"].as_str()), (Some(user_id.as_str()), Some("admin")), "{library:?}: {claims}");
        assert_eq!(claims["groups"], json!(["admin"]), "{library:?}");
        assert_eq!(claims["auth_time"], signed_in["id_token_claims"]["auth_time"], "OIDC Core §12.2: the original auth_time");
        assert!(claims.get("nonce").is_none(), "a refreshed ID token answers no authentication request: {claims}");
        let second = refreshed["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(second, first, "rotated");
        assert_eq!(userinfo_status(&env, refreshed["access_token"].as_str().unwrap()).await, StatusCode::OK);
        assert_eq!(userinfo_status(&env, signed_in["access_token"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED, "replaced");

        let reused = rp.run("refresh", json!({"refresh_token": first})).expect_err("a spent refresh token");
        assert_eq!(oauth_error(&reused), "invalid_grant", "{library:?}: {reused}");
        let after = rp.run("refresh", json!({"refresh_token": second})).expect_err("the family is revoked");
        assert_eq!(oauth_error(&after), "invalid_grant", "{library:?}: {after}");
        assert_eq!(userinfo_status(&env, refreshed["access_token"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED);
        env.sso.patch(&format!("/users/{user_id}"), json!({"groups": []})).await;
    }
}

/// What other clients can do with a token they got hold of: refresh it (refused,
/// and the owner's token is not spent by the attempt), widen its scope, revoke
/// it, introspect it; and a resource server cannot sign anyone in. A sign-in
/// without `offline_access` gets no refresh token at all.
#[tokio::test]
async fn tokens_are_bound_to_their_client_and_scope() {
    let env = env_with_app(json!({})).await;
    let signed_in = sign_in(&env, "bob").await;
    let refresh = signed_in["refresh_token"].as_str().unwrap();
    let (other_id, other_secret) = register(&env, json!({"name": "Other", "redirect_uris": ["https://other.test/cb"]})).await;
    let other = env.rp.as_client(&other_id, other_secret.as_deref());

    let stolen = other.run("refresh", json!({"refresh_token": refresh})).expect_err("another client's refresh token");
    assert_eq!(oauth_error(&stolen), "invalid_grant");
    let revoked = other.run("revoke", json!({"token": refresh})).expect_err("another client's token");
    assert_eq!(oauth_error(&revoked), "invalid_request");
    let peeked = other.run("introspect", json!({"token": signed_in["access_token"]})).unwrap();
    assert_eq!(peeked, json!({"active": false}), "an ordinary client sees only its own tokens");

    let wider = env.rp.run("refresh", json!({"refresh_token": refresh, "scope": "openid profile email groups offline_access admin"}));
    assert_eq!(oauth_error(&wider.expect_err("RFC 6749 §6: no scope beyond the grant")), "invalid_scope");
    let narrower = env.rp.run("refresh", json!({"refresh_token": refresh, "scope": "openid offline_access"})).unwrap();
    assert!(narrower["id_token_claims"].get("email").is_none(), "{narrower}");
    assert_eq!(narrower["scope"], "openid offline_access");
    // Narrowing holds for those tokens only: the family keeps its scope (RFC 6749 §6).
    let whole = env.rp.run("refresh", json!({"refresh_token": narrower["refresh_token"], "scope": OFFLINE})).unwrap();
    assert_eq!((whole["scope"].as_str(), whole["id_token_claims"]["email"].as_str()), (Some(OFFLINE), Some("bob@acme.test")));

    let (rs_id, rs_secret) = resource_server(&env, API).await;
    let rs = env.rp.as_client(&rs_id, rs_secret.as_deref());
    let signs_in = rs.run("refresh", json!({"refresh_token": whole["refresh_token"]})).expect_err("a resource server has no grants");
    assert_eq!(oauth_error(&signs_in), "unauthorized_client");
    let events = env.sso.raw().get(env.sso.url("/app/v1/events")).basic_auth(&rs_id, rs_secret.as_deref()).send().await.unwrap();
    assert_eq!(events.status(), StatusCode::BAD_REQUEST, "an API's credentials do not read the directory's events");
    let authorize = env
        .sso
        .raw()
        .get(env.sso.url(&format!("/oauth2/authorize?client_id={rs_id}&response_type=code&scope=openid&redirect_uri=https://x.test/cb")))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), StatusCode::BAD_REQUEST, "no redirect URI is registered for a resource server");
    let (s, body) = env.sso.post("/applications", json!({"name": "API 2", "client_type": "resource_server", "access_token_audience": API, "redirect_uris": ["https://x.test/cb"]})).await;
    crate::common::assert_error(&(s, body), 422, "invalid_field", Some("redirect_uris"));
    let (s, body) = env.sso.post("/applications", json!({"name": "API 3", "client_type": "resource_server"})).await;
    crate::common::assert_error(&(s, body), 422, "invalid_field", Some("access_token_audience"));
    let (s, body) =
        env.sso.post("/applications", json!({"name": "JWT", "redirect_uris": ["https://x.test/cb"], "access_token_format": "jwt"})).await;
    crate::common::assert_error(&(s, body), 422, "invalid_field", Some("access_token_audience"));
    let as_client =
        json!({"name": "JWT", "redirect_uris": ["https://x.test/cb"], "access_token_format": "jwt", "access_token_audience": other_id});
    crate::common::assert_error(&env.sso.post("/applications", as_client).await, 422, "invalid_field", Some("access_token_audience"));
    let elsewhere = json!({"name": "FC", "redirect_uris": ["https://x.test/cb"], "frontchannel_logout_uri": "https://tracker.test/fc"});
    crate::common::assert_error(&env.sso.post("/applications", elsewhere).await, 422, "invalid_field", Some("frontchannel_logout_uri"));

    let (result, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "bob"})).await;
    assert!(result.unwrap()["refresh_token"].is_null(), "no offline_access, no refresh token");
    let (public_id, _) = register(&env, json!({"name": "SPA", "client_type": "public", "redirect_uris": ["https://spa.test/cb"]})).await;
    let public = env.rp.as_client(&public_id, None);
    let asked = public.run("introspect", json!({"token": signed_in["access_token"]})).expect_err("a public client cannot introspect");
    assert_eq!(oauth_error(&asked), "unauthorized_client");
}

/// A resource server introspects the access tokens for its audience with its own
/// credentials (each library in turn), and no others; revoking an access token
/// ends it alone (the app keeps refreshing), revoking a refresh token ends the
/// family; and signing out ends every token of the session, refresh tokens included.
#[tokio::test]
async fn resource_servers_introspect_and_revocation_ends_what_it_names() {
    let env = env_with_app(json!({"access_token_audience": API})).await;
    let (rs_id, rs_secret) = resource_server(&env, API).await;
    let (elsewhere_id, elsewhere_secret) = resource_server(&env, "https://billing.acme.test").await;
    let signed_in = sign_in(&env, "alice").await;
    let access = signed_in["access_token"].as_str().unwrap();
    for library in [Library::OpenidClient, Library::Oauth4webapi, Library::Authlib] {
        let rs = env.rp.with_library(library).as_client(&rs_id, rs_secret.as_deref());
        let answer = rs.run("introspect", json!({"token": access})).unwrap_or_else(|e| panic!("{library:?}: {e}"));
        assert_eq!(answer["active"], true, "{library:?}: {answer}");
        assert_eq!(answer["client_id"], env.rp.client_id);
        assert_eq!(answer["sub"], signed_in["id_token_claims"]["sub"]);
        assert_eq!((answer["email"].as_str(), answer["token_type"].as_str()), (Some("alice@acme.test"), Some("Bearer")));
        assert_eq!((answer["iss"].as_str(), answer["scope"].as_str()), (Some(env.sso.base.as_str()), Some(OFFLINE)));
        assert_eq!(answer["aud"], API);
        assert!(answer["exp"].as_i64().unwrap() > answer["iat"].as_i64().unwrap());
    }
    let elsewhere = env.rp.as_client(&elsewhere_id, elsewhere_secret.as_deref());
    assert_eq!(elsewhere.run("introspect", json!({"token": access})).unwrap(), json!({"active": false}), "a token for another API");
    let rs = env.rp.as_client(&rs_id, rs_secret.as_deref());
    let own = env.rp.run("introspect", json!({"token": signed_in["refresh_token"]})).unwrap();
    assert_eq!((own["active"].as_bool(), own["client_id"].as_str()), (Some(true), Some(env.rp.client_id.as_str())), "{own}");
    assert_eq!(
        rs.run("introspect", json!({"token": signed_in["refresh_token"]})).unwrap(),
        json!({"active": false}),
        "refresh tokens are the client's own"
    );
    assert_eq!(rs.run("introspect", json!({"token": "made-up"})).unwrap(), json!({"active": false}));

    // The access token alone, through oauth4webapi: the family lives on.
    env.rp.with_library(Library::Oauth4webapi).run("revoke", json!({"token": access})).unwrap();
    assert_eq!(rs.run("introspect", json!({"token": access})).unwrap()["active"], false);
    assert_eq!(userinfo_status(&env, access).await, StatusCode::UNAUTHORIZED);
    let refreshed = env.rp.run("refresh", json!({"refresh_token": signed_in["refresh_token"]})).unwrap();
    assert_eq!(rs.run("introspect", json!({"token": refreshed["access_token"]})).unwrap()["active"], true);
    // Unknown tokens are no error (RFC 7009 §2.2).
    env.rp.run("revoke", json!({"token": "never-issued"})).unwrap();

    // The refresh token, through Authlib: the family ends.
    env.rp
        .with_library(Library::Authlib)
        .run("revoke", json!({"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"}))
        .unwrap();
    assert_eq!(rs.run("introspect", json!({"token": refreshed["access_token"]})).unwrap()["active"], false);
    let refused = env.rp.run("refresh", json!({"refresh_token": refreshed["refresh_token"]})).expect_err("revoked");
    assert_eq!(oauth_error(&refused), "invalid_grant");

    // The session ends (an admin signs the user out): so do its refresh tokens.
    let again = sign_in(&env, "alice").await;
    let user_id = again["id_token_claims"]["sub"].as_str().unwrap();
    assert_eq!(env.sso.delete(&format!("/users/{user_id}/sessions")).await.0, StatusCode::OK);
    let ended = env.rp.run("refresh", json!({"refresh_token": again["refresh_token"]})).expect_err("the session ended");
    assert_eq!(oauth_error(&ended), "invalid_grant");
    assert_eq!(rs.run("introspect", json!({"token": again["access_token"]})).unwrap()["active"], false);
}

/// RFC 9068: an application may ask for JWT access tokens, which its API verifies
/// offline with ssogate's JWKS (here with jose, as a resource server of its own
/// would): `typ` at+jwt, the configured audience, the user's organization, role
/// and groups. ssogate itself still knows them (userinfo, introspection, refresh),
/// and an ID token is not accepted in their place.
#[tokio::test]
async fn jwt_access_tokens_verify_offline_at_the_api() {
    let env = env_with_app(json!({"access_token_format": "jwt", "access_token_audience": API})).await;
    let browser = Browser::new();
    let (signed_in, _) = env.login(&browser, json!({"organization": "acme", "login_hint": "alice", "scope": OFFLINE})).await;
    let signed_in = signed_in.unwrap();
    let access = signed_in["access_token"].as_str().unwrap();
    let api = |token: &str, audience: &str| env.rp.run("verify_access_token", json!({"access_token": token, "audience": audience}));
    let claims = api(access, API).unwrap_or_else(|e| panic!("jose refused: {e}"));
    assert_eq!((claims["header_typ"].as_str(), claims["header_alg"].as_str()), (Some("at+jwt"), Some("RS256")));
    assert_eq!(claims["sub"], signed_in["id_token_claims"]["sub"]);
    assert_eq!(claims["client_id"], env.rp.client_id);
    assert_eq!((claims["role"].as_str(), claims["scope"].as_str()), (Some("end-user"), Some(OFFLINE)));
    assert_eq!(claims["roles"], json!(["end-user"]), "RFC 9068 §2.2.3.1");
    assert_eq!(claims["org_id"], signed_in["id_token_claims"]["org_id"]);
    assert!(api(access, "https://other-api.test").is_err(), "another API's audience");
    assert!(api(signed_in["id_token"].as_str().unwrap(), API).is_err(), "an ID token is no access token");
    assert_eq!(userinfo_status(&env, access).await, StatusCode::OK);
    // It names the session (`sid`), yet it is no ID token: as a logout hint it does
    // not skip the confirmation (an API holding it cannot sign the user out).
    let (page, _) = browser.follow(&env.sso.url(&format!("/oauth2/logout?id_token_hint={access}")), "https://app.example.test/").await;
    assert!(matches!(&page, Landing::Page(StatusCode::OK, html) if html.contains("Sign out?")), "{page:?}");
    assert_eq!(userinfo_status(&env, access).await, StatusCode::OK, "still signed in");

    let refreshed = env.rp.run("refresh", json!({"refresh_token": signed_in["refresh_token"]})).unwrap();
    let again = api(refreshed["access_token"].as_str().unwrap(), API).unwrap();
    assert_ne!(again["jti"], claims["jti"]);
    let (rs_id, rs_secret) = resource_server(&env, API).await;
    let answer = env.rp.as_client(&rs_id, rs_secret.as_deref()).run("introspect", json!({"token": refreshed["access_token"]})).unwrap();
    assert_eq!((answer["active"].as_bool(), answer["aud"].as_str()), (Some(true), Some(API)), "{answer}");
    let (s, app) = env.sso.get(&format!("/applications/{}", env.app["id"].as_str().unwrap())).await;
    assert_eq!((s, app["access_token_format"].as_str()), (StatusCode::OK, Some("jwt")));
}

/// The discovery document names what is offered, so libraries find it.
#[tokio::test]
async fn discovery_advertises_refresh_revocation_and_introspection() {
    let env = env_with_app(json!({})).await;
    let doc: Value = env.sso.raw().get(env.sso.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["grant_types_supported"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(doc["revocation_endpoint"], format!("{}/oauth2/revoke", env.sso.base));
    assert_eq!(doc["introspection_endpoint"], format!("{}/oauth2/introspect", env.sso.base));
    assert!(doc["scopes_supported"].as_array().unwrap().contains(&json!("offline_access")));
}
