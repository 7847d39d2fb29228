//! Brokered login end to end: a real relying party (openid-client) signs in through
//! ssogate, which signs the user in at a real OpenID Provider (oidc-provider).

use crate::common;

use common::browser::{Browser, Landing};
use common::idp::{IdpSoftware, TestIdp};
use common::rp::{Library, RelyingParty};
use common::sso_env::{Env, EnvOptions, APP_REDIRECT, IDP_SECRET};
use common::Ssogate;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn env(provisioning: &str) -> Env {
    Env::start(EnvOptions { provisioning, ..Default::default() }).await
}

/// Issuers that end in `/` (LemonLDAP::NG's default, Auth0's): the admin pastes the
/// issuer, the document is fetched at `<issuer without />/.well-known/…` (OIDC
/// Discovery 1.0 §4.1) and its `issuer` kept exactly, for the ID token's `iss`.
#[tokio::test]
async fn an_issuer_ending_in_a_slash_signs_users_in() {
    let env = Env::start(EnvOptions { op: json!({"issuer_suffix": "/"}), ..Default::default() }).await;
    assert!(env.idp.issuer.ends_with('/'), "{}", env.idp.issuer);
    let (_, report) = env.sso.post(&format!("/connections/{}/test", env.connection_id), json!({})).await;
    assert_eq!(report["problems"], json!([]), "{report}");
    let (result, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await;
    let signed_in = result.unwrap_or_else(|e| panic!("{e}\n{}", env.sso.log()));
    assert_eq!(signed_in["id_token_claims"]["email"], "alice@acme.test");
}

/// A second real OpenID Provider upstream, django-oauth-toolkit (PyPI): an issuer with
/// a path (`/o`), endpoints ending in `/`, no RFC 9207 `iss`, refresh tokens rotated.
/// The connection test passes (credentials included), a sign-in brings the groups
/// through group sync, and a background refresh brings a change of groups.
#[tokio::test]
async fn django_oauth_toolkit_signs_users_in_and_refreshes() {
    let env = Env::start(EnvOptions {
        provider: IdpSoftware::DjangoOauthToolkit,
        op: json!({"ttl": {"AccessToken": 4}}),
        sso_args: vec!["--refresh-margin".into(), "2s".into()],
        scopes: Some(json!(["openid", "email", "profile", "groups"])),
        ..Default::default()
    })
    .await;
    assert!(env.idp.issuer.ends_with("/o"), "{}", env.idp.issuer);
    let sync = json!({"group_sync": {"enabled": true, "create_missing_groups": true, "mapping": "Engineering -> engineers"}});
    assert_eq!(env.sso.patch(&format!("/connections/{}", env.connection_id), sync).await.0, StatusCode::OK);
    let (_, report) = env.sso.post(&format!("/connections/{}/test", env.connection_id), json!({})).await;
    assert_eq!((report["ok"].clone(), report["client_credentials"].clone()), (json!(true), json!("accepted")), "{report}");

    let (result, visited) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dana"})).await;
    let signed_in = result.unwrap_or_else(|e| panic!("{e}\n{}", env.sso.log()));
    assert!(env.went_to_idp(&visited));
    assert_eq!(signed_in["id_token_claims"]["email"], "dana@acme.test");
    assert_eq!(signed_in["id_token_claims"]["groups"], json!(["admin", "engineers"]));
    assert_eq!(signed_in["id_token_claims"]["role"], "admin");

    // At the IdP, dana leaves the admins; a refresh (the access token lives 4 s) brings it.
    let changed = json!({"email": "dana@acme.test", "groups": ["Engineering"]});
    let r = env.sso.raw().post(env.idp.control_url("/test/accounts/dana")).json(&changed).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let user = signed_in["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    common::eventually(std::time::Duration::from_secs(20), "a refresh to bring the new groups", || async {
        let (_, u) = env.sso.get(&format!("/users/{user}")).await;
        (u["groups"] == json!(["engineers"])).then_some(())
    })
    .await;
    let session = &env.sessions_of(&user).await[0];
    assert!(session["upstream"]["failing_since"].is_null() && !session["upstream"]["last_refreshed_at"].is_null(), "{session}");
}

/// A third real OpenID Provider upstream, LemonLDAP::NG (Debian; OpenID-certified): its
/// issuer ends in `/`, it signs people in through its own form, sends no RFC 9207 `iss`
/// and puts the profile and groups in userinfo only (the ID token has `sub` and no
/// more). The connection test sees its credentials accepted and its one logout channel;
/// a sign-in merges userinfo into the profile and brings the groups through group sync.
#[tokio::test]
async fn lemonldap_signs_users_in_with_claims_from_userinfo() {
    let env = Env::start(EnvOptions {
        provider: IdpSoftware::LemonLdap,
        scopes: Some(json!(["openid", "email", "profile", "groups"])),
        ..Default::default()
    })
    .await;
    assert!(env.idp.issuer.ends_with('/'), "{}", env.idp.issuer);
    let sync = json!({"group_sync": {"enabled": true, "create_missing_groups": true, "mapping": "Engineering -> engineers"}});
    assert_eq!(env.sso.patch(&format!("/connections/{}", env.connection_id), sync).await.0, StatusCode::OK);
    let (_, report) = env.sso.post(&format!("/connections/{}/test", env.connection_id), json!({})).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["client_credentials"], "accepted", "{report}");
    assert_eq!(report["logout_channels"], json!(["front_channel", "end_session"]), "{report}");

    let (result, visited) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dana"})).await;
    let signed_in = result.unwrap_or_else(|e| panic!("{e}\n{}", env.sso.log()));
    assert!(env.went_to_idp(&visited));
    let claims = &signed_in["id_token_claims"];
    assert_eq!((claims["idp_sub"].clone(), claims["email"].clone()), (json!("dana"), json!("dana@acme.test")));
    assert_eq!(claims["groups"], json!(["admin", "engineers"]));
    assert_eq!(claims["role"], "admin");
    // One of LemonLDAP's own Demo users, whose profile is only in its directory.
    let (result, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dwho", "prompt": "login"})).await;
    let claims = result.unwrap_or_else(|e| panic!("{e}\n{}", env.sso.log()))["id_token_claims"].clone();
    assert_eq!((claims["idp_sub"].clone(), claims["given_name"].clone()), (json!("dwho"), json!("Doctor")), "{claims}");
}

/// A second certified relying party, oauth4webapi, strict where openid-client is
/// lenient: the RFC 9207 `iss` of the authorization response, PKCE, the nonce, and
/// `auth_time` within `max_age` (OIDC Core §3.1.2.1) — at a first sign-in and at one
/// from the session; then userinfo.
#[tokio::test]
async fn oauth4webapi_signs_in_and_checks_iss_and_max_age() {
    let env = env("jit").await;
    let strict = RelyingParty { library: Library::Oauth4webapi, ..env.rp.clone() };
    let browser = Browser::new();
    let mut auth_times = vec![];
    for params in [json!({"organization": "acme", "login_hint": "alice", "max_age": 300}), json!({"organization": "acme", "max_age": 300})]
    {
        let started = strict.start(params);
        let (landing, _) = browser.follow(&started.url, APP_REDIRECT).await;
        assert!(landing.param("iss").is_some(), "RFC 9207: {landing:?}");
        let signed_in = strict.finish(&started, landing.app().as_str()).unwrap_or_else(|e| panic!("oauth4webapi refused: {e}"));
        assert_eq!(signed_in["id_token_claims"]["email"], "alice@acme.test");
        assert_eq!(signed_in["userinfo"]["email"], "alice@acme.test");
        auth_times.push(signed_in["id_token_claims"]["auth_time"].clone());
    }
    assert_eq!(auth_times[0], auth_times[1], "the second came from the session");
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
    let url =
        env.sso.url("/oauth2/authorize?client_id=nope&redirect_uri=https://app.example.test/callback&response_type=code&scope=openid");
    let (landing, _) = Browser::new().follow(&url, APP_REDIRECT).await;
    assert!(matches!(landing, Landing::Page(StatusCode::BAD_REQUEST, _)));
}

#[tokio::test]
async fn a_tampered_foreign_or_reused_state_is_refused() {
    let env = env("jit").await;
    let browser = Browser::new();
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    // Walk to the IdP's answer but stop before ssogate's callback.
    let (landing, _) = browser.follow(&started.url, &format!("{}/sso/callback", env.sso.base)).await;
    let callback = landing.app();
    let unknown = |page: &Landing| matches!(page, Landing::Page(StatusCode::BAD_REQUEST, b) if b.contains("unknown here"));
    let tampered = callback.as_str().replace("state=", "state=x");
    let (page, _) = browser.follow(&tampered, APP_REDIRECT).await;
    assert!(unknown(&page), "{page:?}");
    // The genuine answer in another browser (without the login's cookie) is refused.
    let (page, _) = Browser::new().follow(callback.as_str(), APP_REDIRECT).await;
    assert!(unknown(&page), "{page:?}");
    // The login's cookie, taken before the login completes...
    let sealed = browser.set_cookies.lock().unwrap().iter().find(|c| c.starts_with("ssogate_login_")).cloned().unwrap();
    let (done, _) = browser.follow(callback.as_str(), APP_REDIRECT).await;
    assert!(done.param("code").is_some(), "{done:?}");
    // ...cannot complete it a second time (here the IdP already refuses its spent code;
    // login_faults shows ssogate refusing the state itself with an IdP that does not).
    let replayer = Browser::new();
    replayer.set_cookie(&env.sso.base, sealed.split(';').next().unwrap());
    let (replayed, _) = replayer.follow(callback.as_str(), APP_REDIRECT).await;
    assert_eq!(replayed.param("error").as_deref(), Some("access_denied"), "{replayed:?}");
    assert!(replayed.param("code").is_none());
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

/// Waits for the organization's newest background sync job to finish; returns it.
async fn newest_sync_job(sso: &Ssogate) -> Value {
    for _ in 0..100 {
        let (_, jobs) = sso.get("/organizations/acme/sync-jobs").await;
        let job = jobs["data"][0].clone();
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the sync job did not finish");
}

/// The kid in a JWT's header.
fn kid(jwt: &str) -> String {
    use base64::Engine;
    let head = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&head).unwrap()["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn public_clients_use_pkce_and_es256_tokens_verify() {
    let env = env("jit").await;
    let (s, app) = env
        .sso
        .post(
            "/applications",
            json!({"name": "SPA", "redirect_uris": [APP_REDIRECT], "client_type": "public", "id_token_signed_response_alg": "ES256"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    assert!(app["client_secret"].is_null());
    let rp = RelyingParty {
        issuer: env.sso.base.clone(),
        client_id: app["client_id"].as_str().unwrap().into(),
        client_secret: None,
        redirect_uri: APP_REDIRECT.into(),
        client_metadata: json!({"id_token_signed_response_alg": "ES256", "token_endpoint_auth_method": "none"}),
        private_jwk: None,
        library: Default::default(),
    };
    let started = rp.start(json!({"organization": "acme", "login_hint": "bob"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    let result = rp.finish(&started, landing.app().as_str()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result["id_token_claims"]["email"], "bob@acme.test");

    // Without PKCE a public client is refused.
    let url = format!(
        "{}/oauth2/authorize?client_id={}&redirect_uri={APP_REDIRECT}&response_type=code&scope=openid&state=s&organization=acme",
        env.sso.base, rp.client_id
    );
    let (landing, _) = Browser::new().follow(&url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("invalid_request"));
    assert!(landing.param("error_description").unwrap().contains("PKCE"));
}

#[tokio::test]
async fn rotated_signing_keys_stay_published_for_tokens_they_signed() {
    let env = env("jit").await;
    let (r, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await;
    let first = r.unwrap()["id_token"].as_str().unwrap().to_owned();
    let (s, keys) = env.sso.post("/signing-keys/rotate", json!({"alg": "RS256"})).await;
    assert_eq!(s, StatusCode::CREATED, "{keys}");
    let rs: Vec<&Value> = keys.as_array().unwrap().iter().filter(|k| k["alg"] == "RS256").collect();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs.iter().filter(|k| k["active"] == true).count(), 1);
    let (r, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await;
    let second = r.unwrap()["id_token"].as_str().unwrap().to_owned();
    assert_ne!(kid(&first), kid(&second));
    let jwks: Value = reqwest::get(env.sso.url("/oauth2/jwks")).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&kid(&first).as_str()) && kids.contains(&kid(&second).as_str()), "{kids:?}");
    let (_, events) = env.sso.get("/events?action=signing_key.created").await;
    assert_eq!(events["data"][0]["actor"], "admin_token");
}

#[tokio::test]
async fn organizations_stay_isolated_from_each_other() {
    // Two organizations, each with its own real IdP, both knowing a user "alice".
    let env = env("jit").await;
    // The connection comes first: the IdP registers its redirect URI.
    let idp_b_port = common::free_port();
    env.sso.post("/organizations", json!({"name": "Beta", "slug": "beta", "domains": ["beta.test"]})).await;
    let (s, conn_b) = env
        .sso
        .post(
            "/organizations/beta/connections",
            json!({"name": "Beta IdP", "client_id": "ssogate-b", "client_secret": IDP_SECRET,
                   "discovery_url": format!("http://127.0.0.1:{idp_b_port}")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let idp_b = TestIdp::start(json!({
        "port": idp_b_port,
        "clients": [{"client_id": "ssogate-b", "client_secret": IDP_SECRET, "redirect_uris": [conn_b["redirect_uri"]]}],
        "accounts": {"alice": {"email": "alice@beta.test", "email_verified": true}},
    }));

    let browser = Browser::new();
    let (a, _) = env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await;
    let a = a.unwrap()["id_token_claims"].clone();
    // A session at Acme does not sign anyone in to Beta: Beta's IdP is asked.
    let (b, visited) = env.login(&browser, json!({"organization": "beta", "login_hint": "alice"})).await;
    let b = b.unwrap()["id_token_claims"].clone();
    assert!(visited.iter().any(|u| u.starts_with(&idp_b.issuer)), "{visited:?}");
    assert_ne!(a["sub"], b["sub"]);
    assert_eq!((a["org_slug"].as_str(), b["org_slug"].as_str()), (Some("acme"), Some("beta")));
    assert_eq!(b["email"], "alice@beta.test");

    // A code from Beta's IdP answered to a login started for Acme is refused: the
    // state binds the login to Acme's connection, whose IdP does not know the code.
    let browser = Browser::new();
    let callback_prefix = format!("{}/sso/callback", env.sso.base);
    let start_a = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    let (to_a, _) = browser.follow(&start_a.url, &callback_prefix).await;
    let start_b = env.rp.start(json!({"organization": "beta", "login_hint": "alice"}));
    let (to_b, _) = browser.follow(&start_b.url, &callback_prefix).await;
    let (a_answer, b_answer) = (to_a.app(), to_b.app());
    let b_code = b_answer.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let mut forged = a_answer.clone();
    let pairs: Vec<(String, String)> = a_answer
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" { b_code.clone() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let (landing, _) = browser.follow(forged.as_str(), APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");
    let (_, acme_users) = env.sso.get("/organizations/acme/users").await;
    assert!(acme_users["data"].as_array().unwrap().iter().all(|u| u["email"] != "alice@beta.test"));
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let env = env("jit").await;
    let started = env.rp.start(json!({"organization": "acme", "prompt": "none"}));
    let (landing, visited) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("login_required"));
    assert!(!env.went_to_idp(&visited));
}

/// An application renewing its session sends `prompt=none` without naming an
/// organization: the browser's session answers (OIDC Core §3.1.2.1), and a browser
/// without one gets `login_required`, never the IdP. Every claim issued is one that
/// discovery lists in `claims_supported`.
#[tokio::test]
async fn prompt_none_without_a_routing_hint_signs_in_from_the_session() {
    let env = env("jit").await;
    let browser = Browser::new();
    let (first, _) = env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await;
    let first = first.unwrap();
    let (renewed, visited) = env.login(&browser, json!({"prompt": "none"})).await;
    let renewed = renewed.unwrap_or_else(|e| panic!("{e}"));
    assert!(!env.went_to_idp(&visited));
    assert_eq!(renewed["id_token_claims"]["sub"], first["id_token_claims"]["sub"]);
    assert_eq!(renewed["id_token_claims"]["sid"], first["id_token_claims"]["sid"]);

    let started = env.rp.start(json!({"prompt": "none"}));
    let (landing, visited) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("login_required"), "{landing:?}");
    assert!(!env.went_to_idp(&visited));
    // Another application, in the signed-in browser, learns nothing of the session
    // (nor which organization it belongs to) without naming one.
    let (_, other) = env.sso.post("/applications", json!({"name": "Other", "redirect_uris": [APP_REDIRECT]})).await;
    let other = RelyingParty {
        issuer: env.sso.base.clone(),
        client_id: other["client_id"].as_str().unwrap().into(),
        client_secret: Some(other["client_secret"].as_str().unwrap().into()),
        redirect_uri: APP_REDIRECT.into(),
        client_metadata: json!({}),
        private_jwk: None,
        library: Default::default(),
    };
    let started = other.start(json!({"prompt": "none"}));
    let (landing, visited) = browser.follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("login_required"), "{landing:?}");
    assert!(!env.went_to_idp(&visited));

    let discovery: Value = env.sso.raw().get(env.sso.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    let supported = discovery["claims_supported"].as_array().unwrap();
    for claim in renewed["id_token_claims"].as_object().unwrap().keys().chain(renewed["userinfo"].as_object().unwrap().keys()) {
        assert!(supported.contains(&json!(claim)), "`{claim}` is issued but not in claims_supported");
    }
}

/// RFC 6750 §2.2: the access token in a form body (pyoidc's default), as well as in
/// the header; both at once is a bad request (§2).
#[tokio::test]
async fn userinfo_takes_the_token_in_a_form_body() {
    let env = env("jit").await;
    let (r, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await;
    let token = r.unwrap()["access_token"].as_str().unwrap().to_owned();
    let url = env.sso.url("/oauth2/userinfo");
    let http = env.sso.raw();
    let by_form = http.post(&url).form(&[("access_token", token.as_str())]).send().await.unwrap();
    assert_eq!(by_form.status(), StatusCode::OK);
    let by_form: Value = by_form.json().await.unwrap();
    let by_header: Value = http.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(by_form, by_header);
    assert_eq!(by_form["email"], "alice@acme.test");
    let both = http.post(&url).bearer_auth(&token).form(&[("access_token", token.as_str())]).send().await.unwrap();
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
    assert_eq!(both.json::<Value>().await.unwrap()["error"], "invalid_request");
    let twice = http.post(&url).form(&[("access_token", token.as_str()), ("access_token", "other")]).send().await.unwrap();
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let wrong = http.post(&url).form(&[("access_token", "not-a-token")]).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // Not in the query (RFC 6750 §2.3 is not offered: URLs end up in logs).
    let query = http.get(format!("{url}?access_token={token}")).send().await.unwrap();
    assert_eq!(query.status(), StatusCode::UNAUTHORIZED);
}

/// RFC 8252 §7.3: a native app registers `http://127.0.0.1/cb` and listens on a port
/// the OS gives it; openid-client signs in through any port. A confidential client's
/// loopback URI stays exact, and `localhost` is no IP literal.
#[tokio::test]
async fn a_native_apps_loopback_redirect_uri_matches_any_port() {
    let env = env("jit").await;
    let app = |client_type: &str| json!({"name": "CLI", "client_type": client_type, "redirect_uris": ["http://127.0.0.1/cb", "http://localhost/cb"]});
    let (_, native) = env.sso.post("/applications", app("public")).await;
    let redirect = "http://127.0.0.1:51234/cb";
    let rp = RelyingParty {
        issuer: env.sso.base.clone(),
        client_id: native["client_id"].as_str().unwrap().into(),
        client_secret: None,
        redirect_uri: redirect.into(),
        client_metadata: json!({"token_endpoint_auth_method": "none"}),
        private_jwk: None,
        library: Default::default(),
    };
    let started = rp.start(json!({"organization": "acme", "login_hint": "bob"}));
    let (landing, _) = Browser::new().follow(&started.url, redirect).await;
    let result = rp.finish(&started, landing.app().as_str()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result["id_token_claims"]["email"], "bob@acme.test");

    let (_, web) = env.sso.post("/applications", app("confidential")).await;
    for (client_id, uri) in [(&web["client_id"], redirect), (&native["client_id"], "http://localhost:51234/cb")] {
        let url = format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={uri}&response_type=code&scope=openid&state=s&organization=acme&code_challenge=x&code_challenge_method=S256",
            env.sso.base,
            client_id.as_str().unwrap()
        );
        let (landing, visited) = Browser::new().follow(&url, uri).await;
        assert!(matches!(landing, Landing::Page(StatusCode::BAD_REQUEST, _)), "{uri}: {landing:?}");
        assert_eq!(visited.len(), 1, "{uri}: never redirected");
    }
}

#[tokio::test]
async fn the_session_id_is_rotated_at_login_and_cookies_are_locked_down() {
    let env = env("jit").await;
    let browser = Browser::new();
    env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    let first = browser.cookie(&env.sso.base, "ssogate_session").expect("a session cookie");
    let set = browser.set_cookies.lock().unwrap().iter().find(|c| c.starts_with("ssogate_session=")).cloned().unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    let (_, visited) = env.login(&browser, json!({"organization": "acme", "login_hint": "alice", "prompt": "login"})).await;
    assert!(env.went_to_idp(&visited));
    let second = browser.cookie(&env.sso.base, "ssogate_session").unwrap();
    assert_ne!(first, second, "a new login must get a new session id");
    // The old session id no longer signs anyone in.
    let thief = Browser::new();
    thief.set_cookie(&env.sso.base, &format!("ssogate_session={first}; Path=/"));
    let (_, visited) = env.login(&thief, json!({"organization": "acme", "login_hint": "bob"})).await;
    assert!(env.went_to_idp(&visited), "the old session must be gone");
}

#[tokio::test]
async fn client_secret_post_works_at_the_token_endpoint() {
    let env = env("jit").await;
    let url = format!(
        "{}/oauth2/authorize?client_id={}&redirect_uri={APP_REDIRECT}&response_type=code&scope=openid%20email&state=s1&organization=acme&login_hint=alice",
        env.sso.base, env.rp.client_id
    );
    let (landing, _) = Browser::new().follow(&url, APP_REDIRECT).await;
    let code = landing.param("code").expect("a code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", APP_REDIRECT),
        ("client_id", env.rp.client_id.as_str()),
        ("client_secret", env.rp.client_secret.as_deref().unwrap()),
    ];
    let resp = reqwest::Client::new().post(env.sso.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["id_token"].as_str().unwrap().split('.').count() == 3);
    // A wrong secret is invalid_client with a 401.
    let mut bad = form;
    bad[4] = ("client_secret", "wrong");
    let resp = reqwest::Client::new().post(env.sso.url("/oauth2/token")).form(&bad).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_client");
}

#[tokio::test]
async fn the_organizations_licence_governs_who_may_sign_in() {
    let env = env("jit").await;
    let put = |body: Value| env.sso.api(reqwest::Method::PUT, "/organizations/acme/entitlements", Some(body));
    common::assert_error(&put(json!({"sso": true})).await, 422, "missing_field", Some("group_sync"));
    common::assert_error(&put(json!({"sso": true, "group_sync": true, "max_users": -1})).await, 422, "invalid_field", Some("max_users"));
    let refused = |landing: &Landing, words: &str| {
        assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");
        assert!(landing.param("error_description").unwrap().contains(words), "{landing:?}");
    };
    let attempt = |hint: &'static str| {
        let started = env.rp.start(json!({"organization": "acme", "login_hint": hint}));
        async move { Browser::new().follow(&started.url, APP_REDIRECT).await.0 }
    };

    // One seat: the first new user takes it, the next is refused, the first keeps signing in.
    let (s, e) = put(json!({"sso": true, "group_sync": true, "max_users": 1, "expires_at": null})).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(attempt("alice").await.param("code").is_some());
    refused(&attempt("bob").await, "seats");
    assert!(attempt("alice").await.param("code").is_some());
    let (_, e) = env.sso.get("/organizations/acme/entitlements").await;
    assert_eq!((e["max_users"].as_u64(), e["user_count"].as_u64()), (Some(1), Some(1)));
    common::assert_error(
        &env.sso.post("/organizations/acme/users", json!({"email": "carol@acme.test"})).await,
        409,
        "seat_limit_reached",
        None,
    );

    // No SSO in the licence, or an expired licence: nobody signs in, not even from a session.
    let browser = Browser::new();
    env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    put(json!({"sso": false, "group_sync": true, "max_users": null})).await;
    refused(&attempt("alice").await, "licence");
    let started = env.rp.start(json!({"organization": "acme"}));
    refused(&browser.follow(&started.url, APP_REDIRECT).await.0, "licence");
    put(json!({"sso": true, "group_sync": true, "expires_at": "2020-01-01T00:00:00Z"})).await;
    refused(&attempt("alice").await, "expired on 2020-01-01");
    put(json!({"sso": true, "group_sync": true, "expires_at": "2099-01-01T00:00:00Z"})).await;
    assert!(attempt("alice").await.param("code").is_some());
    let (_, events) = env.sso.get("/organizations/acme/events?action=entitlements.updated").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn groups_are_synced_from_the_idp_at_every_login() {
    let env = env("jit").await;
    let (s, _) = env.sso.post("/organizations/acme/groups", json!({"name": "engineers", "permissions": ["manage_apps"]})).await;
    assert_eq!(s, StatusCode::CREATED);
    let sync = |claim: &str| {
        json!({"scopes": ["openid", "email", "profile", "groups"], "group_sync": {
            "enabled": true, "claim": claim, "create_missing_groups": true,
            "mapping": "Engineering -> engineers, Sales Team -> sales, g-123 -> marketing",
        }})
    };
    let conn = format!("/connections/{}", env.connection_id);
    assert_eq!(env.sso.patch(&conn, sync("groups")).await.0, StatusCode::OK);
    let claims_of = |hint: &'static str| {
        let (env, browser) = (&env, Browser::new());
        async move {
            let (r, _) = env.login(&browser, json!({"organization": "acme", "login_hint": hint})).await;
            r.unwrap_or_else(|e| panic!("{hint}: {e}\n{}", env.sso.log()))["id_token_claims"].clone()
        }
    };

    // An array of names, read from userinfo (the OP leaves it out of the ID token).
    let dana = claims_of("dana").await;
    assert_eq!(dana["groups"], json!(["admin", "engineers"]));
    assert_eq!(dana["role"], "admin");
    let (_, user) = env.sso.get(&format!("/users/{}", dana["sub"].as_str().unwrap())).await;
    assert_eq!(user["idp_groups"], json!([{"name": "Engineering"}, {"name": "admin"}]));
    // A single string, mapped to a group that is created.
    let erin = claims_of("erin").await;
    assert_eq!((erin["groups"].clone(), erin["role"].clone()), (json!(["sales"]), json!("end-user")));
    // Entra-style objects, mapped by the group's id.
    assert_eq!(env.sso.patch(&conn, sync("entra_groups")).await.0, StatusCode::OK);
    assert_eq!(claims_of("fay").await["groups"], json!(["marketing"]));
    // A nested claim.
    assert_eq!(env.sso.patch(&conn, sync("realm_access.roles")).await.0, StatusCode::OK);
    let gus = claims_of("gus").await;
    assert_eq!((gus["groups"].clone(), gus["role"].clone()), (json!(["builder"]), json!("builder")));
    // No groups claim at all: no groups (IdPs leave an empty claim out), end-user.
    assert_eq!(claims_of("bob").await["groups"], json!(["end-user"]));

    // Hand-set groups are replaced at the next login; without group sync in the
    // licence, logins leave them alone.
    assert_eq!(env.sso.patch(&conn, sync("groups")).await.0, StatusCode::OK);
    newest_sync_job(&env.sso).await; // the re-sync that rule change queued
    let dana_path = format!("/users/{}", dana["sub"].as_str().unwrap());
    env.sso.patch(&dana_path, json!({"groups": []})).await;
    env.sso.api(reqwest::Method::PUT, "/organizations/acme/entitlements", Some(json!({"sso": true, "group_sync": false}))).await;
    assert_eq!(claims_of("dana").await["groups"], json!([]));
    env.sso.api(reqwest::Method::PUT, "/organizations/acme/entitlements", Some(json!({"sso": true, "group_sync": true}))).await;
    assert_eq!(claims_of("dana").await["groups"], json!(["admin", "engineers"]));

    let (_, events) =
        env.sso.get(&format!("/organizations/acme/events?action=user.groups_synced&target_id={}", dana["sub"].as_str().unwrap())).await;
    let latest = &events["data"][0]["changes"];
    assert_eq!(latest["added"], json!(["admin", "engineers"]));
    assert_eq!(latest["role"], json!({"from": "end-user", "to": "admin"}));
    let (_, groups) = env.sso.get("/organizations/acme/groups").await;
    let names: Vec<&str> = groups["data"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"sales") && names.contains(&"marketing"), "{names:?}");
}

#[tokio::test]
async fn changed_rules_are_reapplied_in_the_background_without_a_new_login() {
    let env = env("jit").await;
    env.sso.post("/organizations/acme/groups", json!({"name": "engineers"})).await;
    let conn = format!("/connections/{}", env.connection_id);
    let rules = |mapping: &str, create: bool| json!({"scopes": ["openid", "email", "groups"], "group_sync": {"enabled": true, "claim": "groups", "mapping": mapping, "create_missing_groups": create}});
    assert_eq!(env.sso.patch(&conn, rules("Engineering -> engineers", false)).await.0, StatusCode::OK);
    let mut subs = vec![];
    for hint in ["dana", "erin"] {
        let (r, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": hint})).await;
        subs.push(r.unwrap()["id_token_claims"]["sub"].as_str().unwrap().to_owned());
    }
    let groups_of = |i: usize| {
        let path = format!("/users/{}", subs[i]);
        let sso = &env.sso;
        async move { sso.get(&path).await.1["groups"].clone() }
    };
    assert_eq!(groups_of(0).await, json!(["admin", "engineers"]));
    assert_eq!(groups_of(1).await, json!(["end-user"]), "`Sales Team` matches no group yet");
    let finished = || newest_sync_job(&env.sso);

    // A new mapping reaches both users with nobody signing in again.
    assert_eq!(env.sso.patch(&conn, rules("Engineering -> builder, Sales Team -> sales", true)).await.0, StatusCode::OK);
    let job = finished().await;
    assert_eq!((job["status"].as_str(), job["total"].as_u64(), job["done"].as_u64()), (Some("done"), Some(2), Some(2)), "{job}");
    assert_eq!(job["reason"], "connection.updated");
    assert_eq!(groups_of(0).await, json!(["admin", "builder"]));
    assert_eq!(groups_of(1).await, json!(["sales"]));
    let (s, one) = env.sso.get(&format!("/sync-jobs/{}", job["id"].as_str().unwrap())).await;
    assert_eq!((s, one["id"].clone()), (StatusCode::OK, job["id"].clone()));

    // A group created with an IdP group's exact name is picked up too.
    assert_eq!(env.sso.patch(&conn, rules("", false)).await.0, StatusCode::OK);
    finished().await;
    assert_eq!(groups_of(1).await, json!(["end-user"]));
    env.sso.post("/organizations/acme/groups", json!({"name": "Sales Team"})).await;
    let job = finished().await;
    assert_eq!(job["reason"], "group.created");
    assert_eq!(groups_of(1).await, json!(["Sales Team"]));
    let (_, events) = env.sso.get(&format!("/organizations/acme/events?action=user.groups_synced&target_id={}", subs[1])).await;
    assert_eq!(events["data"][0]["actor"], format!("sync_job:{}", job["id"].as_str().unwrap()));
}
