//! Client authentication by signed JWT (`private_key_jwt`, RFC 7523 §2.2, OIDC Core
//! §9): real libraries sign in, refresh, introspect and revoke with a key of their
//! own (openid-client, oauth4webapi, Authlib), keys given inline or fetched from the
//! client's `jwks_uri` and rotated there; and assertions forged, replayed or
//! addressed elsewhere are refused.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::app_backend::AppBackend;
use crate::common::browser::Browser;
use crate::common::rp::{Library, RelyingParty};
use crate::common::sso_env::{Env, EnvOptions, APP_REDIRECT};

async fn env() -> Env {
    Env::start(EnvOptions::default()).await
}

/// A fresh ES256 key pair: (private JWK, public JWK).
fn keypair(env: &Env) -> (Value, Value) {
    let pair = env.rp.run("keypair", json!({"alg": "ES256"})).unwrap();
    (pair["private_jwk"].clone(), pair["public_jwk"].clone())
}

/// Registers a `private_key_jwt` application with `keys` (`{"jwks": …}` or
/// `{"jwks_uri": …}`); returns it.
async fn register(env: &Env, keys: Value) -> Value {
    let mut app = json!({"name": "Signed", "redirect_uris": [APP_REDIRECT], "token_endpoint_auth_method": "private_key_jwt"});
    app.as_object_mut().unwrap().extend(keys.as_object().unwrap().clone());
    let (s, app) = env.sso.post("/applications", app).await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    app
}

async fn sign_in(rp: &RelyingParty, params: Value) -> Result<Value, Value> {
    let started = rp.start(params);
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    rp.finish(&started, landing.app().as_str())
}

/// A client assertion signed by hand with `private_jwk`.
fn assertion(env: &Env, private_jwk: &Value, claims: Value) -> String {
    env.rp.run("sign_assertion", json!({"private_jwk": private_jwk, "claims": claims})).unwrap()["assertion"].as_str().unwrap().to_owned()
}

/// Introspection (it changes nothing) authenticated by `assertion`.
async fn introspect_with(env: &Env, assertion: &str) -> (StatusCode, Value) {
    let form = [
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion),
        ("token", "no-such-token"),
    ];
    let r = env.sso.raw().post(env.sso.url("/oauth2/introspect")).form(&form).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Each library authenticates with its own key and no secret exists: openid-client
/// signs in (code exchange) and revokes, oauth4webapi refreshes, Authlib refreshes
/// and introspects.
#[tokio::test]
async fn private_key_jwt_clients_use_every_endpoint_with_real_libraries() {
    let env = env().await;
    let (private, public) = keypair(&env);
    let app = register(&env, json!({"jwks": {"keys": [public]}})).await;
    assert!(app["client_secret"].is_null(), "no secret is issued: {app}");
    assert_eq!(app["token_endpoint_auth_method"], "private_key_jwt");
    let rp = env.rp.as_client(app["client_id"].as_str().unwrap(), None).with_private_key(&private);

    let signed_in = sign_in(&rp, json!({"organization": "acme", "login_hint": "alice", "scope": "openid email offline_access"}))
        .await
        .unwrap_or_else(|e| panic!("openid-client with private_key_jwt: {e}"));
    assert_eq!(signed_in["id_token_claims"]["email"], "alice@acme.test");
    let refreshed = rp.with_library(Library::Oauth4webapi).run("refresh", json!({"refresh_token": signed_in["refresh_token"]}));
    let refreshed = refreshed.unwrap_or_else(|e| panic!("oauth4webapi with private_key_jwt: {e}"));
    let again = rp.with_library(Library::Authlib).run("refresh", json!({"refresh_token": refreshed["refresh_token"]}));
    let again = again.unwrap_or_else(|e| panic!("Authlib with private_key_jwt: {e}"));
    let answer = rp.with_library(Library::Authlib).run("introspect", json!({"token": again["access_token"]})).unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    rp.run("revoke", json!({"token": again["refresh_token"]})).unwrap();
    assert_eq!(rp.with_library(Library::Authlib).run("introspect", json!({"token": again["access_token"]})).unwrap()["active"], false);

    // There is no secret to rotate: the keys are the client's.
    let (s, body) = env.sso.post(&format!("/applications/{}/rotate-secret", app["id"].as_str().unwrap()), json!({})).await;
    assert!(s.is_client_error(), "{s} {body}");
}

/// What an attacker can do with a `private_key_jwt` client's id: send an assertion
/// of its own key, replay one it saw, address one elsewhere, stretch or drop its
/// claims, use `alg: none`, or fall back to a secret; and what an admin may register.
#[tokio::test]
async fn forged_replayed_or_misaddressed_client_assertions_are_refused() {
    let env = env().await;
    let (private, public) = keypair(&env);
    let app = register(&env, json!({"jwks": {"keys": [public]}})).await;
    let id = app["client_id"].as_str().unwrap();
    let issuer = env.sso.base.clone();
    let claims = |jti: &str| json!({"iss": id, "sub": id, "aud": issuer, "exp": now() + 60, "iat": now(), "jti": jti});

    let good = assertion(&env, &private, claims("one"));
    assert_eq!(introspect_with(&env, &good).await, (StatusCode::OK, json!({"active": false})));
    let refused = |got: (StatusCode, Value), what: &str| {
        assert_eq!((got.0, got.1["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{what}: {}", got.1);
    };
    refused(introspect_with(&env, &good).await, "a replay (RFC 7523 §3: jti)");
    let with = |change: Value| {
        let mut c = claims(&format!("j-{}", rand_suffix()));
        c.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        c
    };
    for (what, c) in [
        ("another audience", with(json!({"aud": "https://other-idp.test"}))),
        ("ssogate among other audiences", with(json!({"aud": [issuer, "https://other-idp.test"]}))),
        ("the revocation endpoint as audience", with(json!({"aud": format!("{issuer}/oauth2/revoke")}))),
        ("iss is not the client", with(json!({"iss": "client_someone_else"}))),
        ("expired", with(json!({"exp": now() - 600}))),
        ("valid for a day", with(json!({"exp": now() + 86_400}))),
        ("not valid yet", with(json!({"nbf": now() + 600}))),
        ("no jti", with(json!({"jti": null}))),
    ] {
        refused(introspect_with(&env, &assertion(&env, &private, c)).await, what);
    }
    let (stranger, _) = keypair(&env);
    refused(introspect_with(&env, &assertion(&env, &stranger, claims("two"))).await, "signed by another key");
    let b64 = |v: Value| base64_url(&v.to_string());
    let unsigned = format!("{}.{}.", b64(json!({"alg": "none"})), b64(claims("three")));
    refused(introspect_with(&env, &unsigned).await, "alg none");

    // A secret in place of the assertion; an assertion from a client that has a secret.
    let r =
        env.sso.raw().post(env.sso.url("/oauth2/introspect")).basic_auth(id, Some("guess")).form(&[("token", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let secret_app = &env.rp.client_id;
    let theirs = assertion(&env, &private, json!({"iss": secret_app, "sub": secret_app, "aud": issuer, "exp": now() + 60, "jti": "four"}));
    refused(introspect_with(&env, &theirs).await, "an assertion for a client registered with a secret");

    // Registration: public keys only, in one place, for private_key_jwt clients only.
    for (body, field) in [
        (json!({"jwks": {"keys": [private]}}), "jwks"),
        (json!({}), "jwks"),
        (json!({"jwks": {"keys": [public]}, "jwks_uri": "https://app.example.test/jwks"}), "jwks_uri"),
        (json!({"jwks_uri": "https://169.254.169.254/latest/meta-data"}), "jwks_uri"),
    ] {
        let mut app = json!({"name": "Bad", "redirect_uris": [APP_REDIRECT], "token_endpoint_auth_method": "private_key_jwt"});
        app.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        crate::common::assert_error(&env.sso.post("/applications", app).await, 422, "invalid_field", Some(field));
    }
    let public_pkj =
        json!({"name": "SPA", "client_type": "public", "redirect_uris": [APP_REDIRECT], "token_endpoint_auth_method": "private_key_jwt"});
    crate::common::assert_error(&env.sso.post("/applications", public_pkj).await, 422, "invalid_field", Some("token_endpoint_auth_method"));
    let keys_without = json!({"name": "Keys", "redirect_uris": [APP_REDIRECT], "jwks": {"keys": [public]}});
    crate::common::assert_error(&env.sso.post("/applications", keys_without).await, 422, "invalid_field", Some("jwks"));

    // A leaked key is replaced in place: the old one stops at once, the new one works.
    let (new_private, new_public) = keypair(&env);
    let path = format!("/applications/{}", app["id"].as_str().unwrap());
    let (s, body) = env.sso.patch(&path, json!({"jwks": {"keys": [new_public]}})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    refused(introspect_with(&env, &assertion(&env, &private, claims("five"))).await, "the replaced key");
    assert_eq!(introspect_with(&env, &assertion(&env, &new_private, claims("six"))).await.0, StatusCode::OK);
    crate::common::assert_error(&env.sso.patch(&path, json!({"jwks": null})).await, 422, "invalid_field", Some("jwks"));
}

/// Keys published at the client's `jwks_uri` are fetched under the SSRF guard, kept,
/// and fetched again when an assertion names a key rotated in since; a key rotated
/// out stops working.
#[tokio::test]
async fn keys_at_the_clients_jwks_uri_are_fetched_and_follow_rotation() {
    let env = env().await;
    let backend = AppBackend::start().await;
    let (old_private, old_public) = keypair(&env);
    backend.publish_keys(&[&old_public]);
    let app = register(&env, json!({"jwks_uri": backend.jwks_uri})).await;
    let id = app["client_id"].as_str().unwrap();
    let issuer = env.sso.base.clone();
    let claims = |jti: &str| json!({"iss": id, "sub": id, "aud": format!("{issuer}/oauth2/token"), "exp": now() + 60, "jti": jti});

    assert_eq!(introspect_with(&env, &assertion(&env, &old_private, claims("a"))).await.0, StatusCode::OK);
    assert_eq!(introspect_with(&env, &assertion(&env, &old_private, claims("b"))).await.0, StatusCode::OK);
    assert_eq!(backend.key_fetches(), 1, "the key set is kept between requests");

    // Assertions naming keys nobody published fetch the set again at most every
    // 10 s, however many come.
    let (made_up, _) = keypair(&env);
    for jti in ["x1", "x2", "x3"] {
        assert_eq!(introspect_with(&env, &assertion(&env, &made_up, claims(jti))).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(backend.key_fetches(), 1, "no fetch for made-up keys within 10 s of the last");

    let (new_private, new_public) = keypair(&env);
    backend.publish_keys(&[&new_public]);
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert_eq!(introspect_with(&env, &assertion(&env, &new_private, claims("c"))).await.0, StatusCode::OK, "a key rotated in");
    assert_eq!(backend.key_fetches(), 2);
    let (s, body) = introspect_with(&env, &assertion(&env, &old_private, claims("d"))).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "a key rotated out: {body}");

    let rp = env.rp.as_client(id, None).with_private_key(&new_private);
    let signed_in = sign_in(&rp, json!({"organization": "acme", "login_hint": "bob"})).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signed_in["id_token_claims"]["email"], "bob@acme.test");

    // The client's key server down: ssogate cannot tell, and says so (503), counting
    // nothing against the client.
    let unreachable = register(&env, json!({"jwks_uri": "http://127.0.0.1:9/jwks"})).await;
    let gone = unreachable["client_id"].as_str().unwrap();
    let c = json!({"iss": gone, "sub": gone, "aud": issuer, "exp": now() + 60, "jti": "y"});
    let (s, body) = introspect_with(&env, &assertion(&env, &new_private, c)).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable")), "{body}");
}

fn rand_suffix() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
