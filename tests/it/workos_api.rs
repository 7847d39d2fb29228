//! The WorkOS-compatible SSO API, driven by WorkOS's own SDKs (npm `@workos-inc/node`,
//! PyPI `workos`) configured with nothing but ssogate's base URL, an application's
//! client id and its secret as the API key, against a real sign-in through a real OP.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::browser::{Browser, Landing};
use crate::common::sso_env::{accounts, Env, EnvOptions, APP_REDIRECT};

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Node,
    Python,
}

fn run(sdk: Sdk, step: &str, input: &Value) -> Result<Value, Value> {
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut command = match sdk {
        Sdk::Node => {
            let mut c = Command::new("node");
            c.arg("workos.mjs").current_dir(tests.join("idp"));
            c
        }
        Sdk::Python => {
            let mut c = Command::new(tests.join("workos/.venv/bin/python"));
            c.arg("sdk.py").current_dir(tests.join("workos"));
            c
        }
    };
    let out = command.arg(step).arg(input.to_string()).output().expect("running the SDK");
    let text = String::from_utf8_lossy(&out.stdout);
    let value: Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{sdk:?} printed {text:?}, {}", String::from_utf8_lossy(&out.stderr)));
    if out.status.success() {
        Ok(value)
    } else {
        Err(value)
    }
}

/// The SDKs' profile, in either's spelling (Node camelCases, Python keeps the wire's).
fn field<'v>(profile: &'v Value, snake: &str, camel: &str) -> &'v Value {
    profile.get(snake).or_else(|| profile.get(camel)).unwrap_or(&Value::Null)
}

/// Each SDK builds the authorization URL (`sso.getAuthorizationUrl`), the browser
/// signs in at the organization's real IdP, and the SDK exchanges the code for the
/// profile and token (`sso.getProfileAndToken`) and reads the profile again
/// (`sso.getProfile`); a code works once, and only with the application's own key.
#[tokio::test]
async fn applications_written_for_workos_sign_users_in_unchanged() {
    let env = Env::start(EnvOptions::default()).await;
    let (client_id, api_key) = env.app_credentials();
    let (s, org) = env.sso.get("/organizations/acme").await;
    assert_eq!(s, StatusCode::OK);
    let (other_id, other_key) = {
        let (s, app) = env.sso.post("/applications", json!({"name": "Other", "redirect_uris": [APP_REDIRECT]})).await;
        assert_eq!(s, StatusCode::CREATED);
        (app["client_id"].as_str().unwrap().to_owned(), app["client_secret"].as_str().unwrap().to_owned())
    };
    for sdk in [Sdk::Node, Sdk::Python] {
        let input = json!({"base": env.sso.base, "api_key": api_key, "client_id": client_id, "redirect_uri": APP_REDIRECT,
                           "organization": org["id"], "login_hint": "alice", "state": "st-1"});
        let url = run(sdk, "authorization_url", &input).unwrap()["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(&format!("{}/sso/authorize?", env.sso.base)), "{url}");
        let browser = Browser::new();
        let (landing, visited) = browser.follow(&url, APP_REDIRECT).await;
        assert!(env.went_to_idp(&visited), "{sdk:?}: {visited:?}");
        assert_eq!(landing.param("state").as_deref(), Some("st-1"));
        let code = landing.param("code").unwrap_or_else(|| panic!("{sdk:?}: {landing:?}"));

        let mut exchange = input.clone();
        exchange["code"] = json!(code);
        let got = run(sdk, "profile_and_token", &exchange).unwrap_or_else(|e| panic!("{sdk:?} getProfileAndToken: {e}"));
        let profile = &got["profile"];
        assert_eq!(profile["email"], "alice@acme.test", "{sdk:?}: {profile}");
        assert_eq!(field(profile, "first_name", "firstName"), "Alice");
        assert_eq!(field(profile, "last_name", "lastName"), "Liddell");
        assert_eq!(field(profile, "idp_id", "idpId"), "alice");
        assert_eq!(field(profile, "organization_id", "organizationId"), &org["id"]);
        assert_eq!(field(profile, "connection_id", "connectionId").as_str(), Some(env.connection_id.as_str()));
        assert_eq!(field(profile, "connection_type", "connectionType"), "GenericOIDC");
        assert_eq!(profile["role"]["slug"], "end-user");
        assert!(profile["id"].as_str().unwrap().starts_with("prof_"), "{profile}");
        assert_eq!(field(profile, "raw_attributes", "rawAttributes")["department"], "R&D", "the IdP's other claims: {profile}");

        let access = field(&got, "access_token", "accessToken").as_str().unwrap().to_owned();
        let mut read = input.clone();
        read["access_token"] = json!(access);
        let again = run(sdk, "profile", &read).unwrap_or_else(|e| panic!("{sdk:?} getProfile: {e}"));
        assert_eq!((again["email"].clone(), again["id"].clone()), (json!("alice@acme.test"), profile["id"].clone()));

        assert!(run(sdk, "profile_and_token", &exchange).is_err(), "{sdk:?}: a code works once");
        read["access_token"] = json!("made-up");
        assert!(run(sdk, "profile", &read).is_err(), "{sdk:?}: an unknown token");
    }

    // Another application's key cannot take this application's code (and spends it).
    let input = json!({"base": env.sso.base, "api_key": api_key, "client_id": client_id, "redirect_uri": APP_REDIRECT,
                       "organization": "acme", "login_hint": "bob", "state": "s"});
    let url = run(Sdk::Node, "authorization_url", &input).unwrap()["url"].as_str().unwrap().to_owned();
    let (landing, _) = Browser::new().follow(&url, APP_REDIRECT).await;
    let stolen = json!({"base": env.sso.base, "api_key": other_key, "client_id": other_id, "code": landing.param("code")});
    assert!(run(Sdk::Node, "profile_and_token", &stolen).is_err());
    let form = [("client_id", client_id.as_str()), ("client_secret", "wrong"), ("grant_type", "authorization_code"), ("code", "x")];
    let r = env.sso.raw().post(env.sso.url("/sso/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a wrong API key");

    // WorkOS's OAuth providers are not offered: a page says so.
    let provider =
        env.sso.url(&format!("/sso/authorize?client_id={client_id}&redirect_uri={APP_REDIRECT}&response_type=code&provider=GoogleOAuth"));
    let (page, _) = Browser::new().follow(&provider, APP_REDIRECT).await;
    assert!(matches!(&page, Landing::Page(StatusCode::BAD_REQUEST, html) if html.contains("not offered")), "{page:?}");
}

/// `/sso/profile` answers any live access token, so it tells no more than the
/// token's scope allows: a token an application got by OpenID Connect with `openid`
/// alone shows no email, name, groups or IdP attributes there.
#[tokio::test]
async fn the_profile_tells_no_more_than_the_tokens_scope() {
    let env = Env::start(EnvOptions::default()).await;
    let (signed_in, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice", "scope": "openid"})).await;
    let access = signed_in.unwrap()["access_token"].as_str().unwrap().to_owned();
    let r = env.sso.raw().get(env.sso.url("/sso/profile")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let profile: Value = r.json().await.unwrap();
    assert_eq!((profile["email"].clone(), profile["first_name"].clone()), (Value::Null, Value::Null), "{profile}");
    assert_eq!((profile["raw_attributes"].clone(), profile["groups"].clone()), (json!({}), json!([])), "{profile}");
    let none = env.sso.raw().get(env.sso.url("/sso/profile")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

/// Webhooks are signed in WorkOS's scheme and under its header too (`WorkOS-Signature`),
/// so the SDKs' own checks accept ssogate's deliveries: Node's
/// `webhooks.constructEvent` and Python's `webhooks.verify_header`; a body changed in
/// transit, or another endpoint's secret, is refused by both.
#[tokio::test]
async fn the_sdks_verify_ssogates_webhooks() {
    let env = Env::start(EnvOptions::default()).await;
    let receiver = crate::common::webhook_receiver::WebhookReceiver::start().await;
    let (s, hook) =
        env.sso.post(&format!("/applications/{}/webhooks", env.app["id"].as_str().unwrap()), json!({"url": receiver.url})).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let (signed_in, _) = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await;
    let user_id = signed_in.unwrap()["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    assert_eq!(env.sso.delete(&format!("/users/{user_id}/sessions")).await.0, StatusCode::OK);
    let heard = receiver.received_until(std::time::Duration::from_secs(15), |r| !r.is_empty()).await;
    let delivery = heard.first().expect("a webhook arrived");
    let (client_id, api_key) = env.app_credentials();
    let secret = hook["secret"].as_str().unwrap();
    let input = |body: &str, secret: &str| json!({"base": env.sso.base, "api_key": api_key, "client_id": client_id, "body": body, "sig_header": delivery.signature, "secret": secret});
    let verified = run(Sdk::Node, "construct_event", &input(&delivery.body, secret)).unwrap_or_else(|e| panic!("constructEvent: {e}"));
    assert_eq!(verified["verified"], true, "{verified}");
    let body: Value = serde_json::from_str(&delivery.body).unwrap();
    assert_eq!(body["event"], "session.ended", "{body}");
    run(Sdk::Python, "verify_header", &input(&delivery.body, secret)).unwrap_or_else(|e| panic!("verify_header: {e}"));
    let tampered = delivery.body.replacen("session.ended", "session.endeD", 1);
    for sdk in [Sdk::Node, Sdk::Python] {
        let step = if matches!(sdk, Sdk::Node) { "construct_event" } else { "verify_header" };
        assert!(run(sdk, step, &input(&tampered, secret)).is_err(), "{sdk:?}: a changed body");
        assert!(run(sdk, step, &input(&delivery.body, "another-endpoints-secret")).is_err(), "{sdk:?}: another secret");
    }
}

/// What the profile must not say: an email ssogate does not vouch for (another
/// tenant's IdP asserting an address of a domain not the organization's, OIDC Core
/// §5.7), and the IdP's groups claim among the raw attributes; and a code of an
/// application with two redirect URIs is not taken without its `redirect_uri` unless
/// PKCE binds it (RFC 9700 §4.5), which the SDK's `getAuthorizationUrlWithPKCE` does.
#[tokio::test]
async fn the_profile_keeps_to_what_ssogate_vouches_for_and_codes_stay_bound() {
    let mut people = accounts();
    people["mallory"] = json!({"email": "ceo@globex.test", "email_verified": true, "given_name": "Mallory"});
    let second = "https://app.example.test/second";
    let app = json!({"redirect_uris": [APP_REDIRECT, second]});
    let env = Env::start(EnvOptions { app, op: json!({"accounts": people}), ..Default::default() }).await;
    let (client_id, api_key) = env.app_credentials();
    let base =
        json!({"base": env.sso.base, "api_key": api_key, "client_id": client_id, "redirect_uri": APP_REDIRECT, "organization": "acme"});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let code_for = |url: String| async move {
        let (landing, _) = Browser::new().follow(&url, APP_REDIRECT).await;
        landing.param("code").unwrap_or_else(|| panic!("{landing:?}"))
    };

    // Without PKCE and without redirect_uri: refused, whichever URI it went to.
    let url = run(Sdk::Node, "authorization_url", &with(json!({"login_hint": "alice", "state": "s"}))).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = run(Sdk::Node, "profile_and_token", &with(json!({"code": code_for(url).await}))).expect_err("an unbound code");
    assert_eq!(refused["status"], 400, "{refused}");

    // With PKCE: taken, and the rest of the profile is as it should be.
    // Dana's IdP does not say her address is verified: ssogate does not vouch for it either.
    for (who, email) in [("mallory", Value::Null), ("alice", json!("alice@acme.test")), ("dana", Value::Null)] {
        let started = run(Sdk::Node, "authorization_url_pkce", &with(json!({"login_hint": who}))).unwrap();
        let code = code_for(started["url"].as_str().unwrap().to_owned()).await;
        let got = run(Sdk::Node, "profile_and_token", &with(json!({"code": code, "code_verifier": started["code_verifier"]})))
            .unwrap_or_else(|e| panic!("PKCE: {e}"));
        let profile = &got["profile"];
        assert_eq!(profile.get("email").cloned().unwrap_or(Value::Null), email, "{who}: {profile}");
        let raw = &profile["rawAttributes"];
        assert!(raw.get("groups").is_none(), "the groups claim is the groups scope's: {profile}");
        if who == "alice" {
            assert_eq!(raw["department"], "R&D", "{profile}");
        }
    }
}
