//! Sessions after sign-in, against the real OP (oidc-provider, with short token
//! lifetimes) and the real client (openid-client): upstream tokens refreshed in the
//! background, the SSO user info endpoint, revocation at the IdP, RP-initiated
//! logout through the IdP, back-channel logout both ways, and session admin.

use crate::common;

use std::time::Duration;

use common::app_backend::AppBackend;
use common::browser::{Browser, Landing};
use common::eventually;
use common::idp::IdpSoftware;
use common::sso_env::{Env, EnvOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BYE: &str = "https://app.example.test/bye";

/// The OP's access tokens live 6 s; ssogate refreshes them 3 s before expiry.
fn short_lived<'a>() -> EnvOptions<'a> {
    EnvOptions {
        op: json!({"ttl": {"AccessToken": 6, "IdToken": 60, "RefreshToken": 3600}}),
        sso_args: vec!["--refresh-margin".into(), "3s".into()],
        scopes: Some(json!(["openid", "email", "profile", "groups", "offline_access"])),
        ..Default::default()
    }
}

#[tokio::test]
async fn upstream_tokens_refresh_in_the_background_and_bring_group_changes() {
    let env = Env::start(EnvOptions { app: json!({"expose_idp_tokens": true}), ..short_lived() }).await;
    let conn = format!("/connections/{}", env.connection_id);
    let sync = json!({"group_sync": {"enabled": true, "claim": "groups", "mapping": "Engineering -> engineers, Sales Team -> sales", "create_missing_groups": true}});
    assert_eq!(env.sso.patch(&conn, sync).await.0, StatusCode::OK);

    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dana"})).await.0.unwrap();
    let user_id = signed_in["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    assert_eq!(signed_in["id_token_claims"]["groups"], json!(["admin", "engineers"]));
    assert!(signed_in["id_token_claims"]["sid"].as_str().unwrap().starts_with("ses_"));
    let access_token = signed_in["access_token"].as_str().unwrap();
    let (client_id, secret) = env.app_credentials();

    // The live SSO profile: the IdP's claims, its ID token, and (this app may) its access token.
    let (s, first) = env.sso_userinfo(&client_id, &secret, access_token).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!((first["sub"].as_str(), first["email"].as_str()), (Some("dana"), Some("dana@acme.test")));
    assert_eq!(first["groups"], json!(["Engineering", "admin"]));
    assert_eq!(first["id_token_decrypted"]["iss"], env.idp.issuer);
    assert!(first["id_token"].as_str().unwrap().split('.').count() == 3);
    assert!(first["access_token"].is_string() && first["expires_in"].as_i64().unwrap() <= 6);
    assert_eq!(first["ssogate"]["user_id"], user_id);

    // The IdP changes dana's groups; no one signs in again.
    let changed = json!({"email": "dana@acme.test", "groups": ["Sales Team"]});
    let r = reqwest::Client::new().post(format!("{}/test/accounts/dana", env.idp.issuer)).json(&changed).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let refreshed = eventually(Duration::from_secs(20), "a background refresh bringing the new groups", || async {
        let (_, live) = env.sso_userinfo(&client_id, &secret, access_token).await;
        (live["groups"] == json!(["Sales Team"])).then_some(live)
    })
    .await;
    assert_ne!(refreshed["access_token"], first["access_token"], "the freshest upstream access token is handed out");
    assert!(refreshed["access_token_expires_at"].as_i64() > first["access_token_expires_at"].as_i64());
    assert!(refreshed["ssogate"]["refreshed_at"].is_number());
    // The directory and the app's userinfo follow, through the connection's mapping.
    let (_, user) = env.sso.get(&format!("/users/{user_id}")).await;
    assert_eq!(user["groups"], json!(["sales"]));
    assert_eq!(env.app_userinfo(&signed_in).unwrap()["groups"], json!(["sales"]));
    let (_, events) = env.sso.get("/organizations/acme/events?action=user.groups_synced").await;
    assert!(events["data"][0]["actor"].as_str().is_some_and(|a| a.starts_with("refresh:")), "{events}");
    // Refreshes keep going while the session lives.
    let sessions = env.sessions_of(&user_id).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["upstream"]["has_refresh_token"], true);
    assert!(sessions[0]["upstream"]["next_refresh_at"].is_string() && sessions[0]["upstream"]["last_error"].is_null());

    // Only the application the token was issued to may use it here, and only with its secret.
    let (s, err) = env.sso_userinfo(&client_id, "wrong-secret", access_token).await;
    assert_eq!((s, err["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let (_, other) = env.sso.post("/applications", json!({"name": "Other", "redirect_uris": ["https://other.test/cb"]})).await;
    let (s, err) = env.sso_userinfo(other["client_id"].as_str().unwrap(), other["client_secret"].as_str().unwrap(), access_token).await;
    assert_eq!((s, err["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    // An application without expose_idp_tokens gets the profile but never the IdP's access token.
    assert_eq!(
        env.sso.patch(&format!("/applications/{}", env.app["id"].as_str().unwrap()), json!({"expose_idp_tokens": false})).await.0,
        StatusCode::OK
    );
    let (s, hidden) = env.sso_userinfo(&client_id, &secret, access_token).await;
    assert_eq!(s, StatusCode::OK);
    assert!(hidden.get("access_token").is_none() && hidden["email"] == "dana@acme.test", "{hidden}");
    assert!(!env.sso.log().contains(first["access_token"].as_str().unwrap()), "upstream tokens never reach the log");
    let refreshed = common::metric(&env.sso.metrics().await, "ssogate_upstream_refreshes_total", &["outcome=\"refreshed\""]);
    assert!(refreshed >= 1.0, "refreshes are counted");
}

#[tokio::test]
async fn a_grant_revoked_at_the_idp_ends_the_session_and_the_apps_token() {
    let backend = AppBackend::start().await;
    let env = Env::start(EnvOptions { app: json!({"backchannel_logout_uri": backend.backchannel_logout_uri}), ..short_lived() }).await;
    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    assert!(env.app_userinfo(&signed_in).is_ok());

    let r = reqwest::Client::new().post(format!("{}/test/revoke/alice", env.idp.issuer)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let refused =
        eventually(Duration::from_secs(20), "userinfo refusing the app's token", || async { env.app_userinfo(&signed_in).err() }).await;
    assert_eq!(refused["code"], "OAUTH_WWW_AUTHENTICATE_CHALLENGE", "a 401 with a Bearer challenge: {refused}");

    let user_id = signed_in["id_token_claims"]["sub"].as_str().unwrap();
    assert!(env.sessions_of(user_id).await.is_empty());
    let (_, events) = env.sso.get("/organizations/acme/events?action=session.ended").await;
    assert_eq!(events["data"][0]["changes"]["reason"], "refresh_failed", "{events}");
    // The application was told over the back channel, with a token openid-client's jose accepts.
    let tokens = backend.logout_tokens(1, Duration::from_secs(10)).await;
    assert_eq!(tokens.len(), 1);
    let claims = env.rp.run("verify_logout_token", json!({"logout_token": tokens[0]})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sid"], signed_in["id_token_claims"]["sid"]);
    assert_eq!(claims["sub"], user_id);
}

#[tokio::test]
async fn an_idp_down_past_the_grace_period_ends_the_session() {
    let mut opts = short_lived();
    opts.sso_args.extend(["--refresh-grace".into(), "4s".into()]);
    let mut env = Env::start(opts).await;
    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    let user_id = signed_in["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    env.idp.stop();
    // Failing refreshes are retried and shown to admins while the grace period lasts...
    let failing = eventually(Duration::from_secs(15), "a failed refresh on record", || async {
        env.sessions_of(&user_id).await.first().filter(|s| s["upstream"]["failing_since"].is_string()).cloned()
    })
    .await;
    assert!(failing["upstream"]["last_error"].as_str().unwrap().contains("identity provider"), "{failing}");
    assert!(env.app_userinfo(&signed_in).is_ok(), "the session lives through the grace period");
    // ...then the session ends, and the app's token with it.
    eventually(Duration::from_secs(20), "the session ending", || async { env.app_userinfo(&signed_in).err() }).await;
    assert!(env.sessions_of(&user_id).await.is_empty());
    let (_, events) = env.sso.get("/organizations/acme/events?action=session.ended").await;
    assert_eq!(events["data"][0]["changes"]["reason"], "refresh_failed", "{events}");
}

#[tokio::test]
async fn logout_signs_out_at_the_idp_and_returns_to_the_app() {
    let env = Env::start(EnvOptions { app: json!({"post_logout_redirect_uris": [BYE]}), ..Default::default() }).await;
    let browser = Browser::new();
    let signed_in = env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();

    // An address the application did not register: a page, not a redirect.
    let client_id = env.app["client_id"].as_str().unwrap();
    let bad = env.sso.url(&format!("/oauth2/logout?client_id={client_id}&post_logout_redirect_uri=https://evil.example.test/"));
    let (page, _) = browser.follow(&bad, "https://evil.example.test").await;
    assert!(matches!(page, Landing::Page(StatusCode::BAD_REQUEST, _)), "{page:?}");

    // openid-client builds the logout URL; the browser goes through the IdP's sign-out.
    let params = json!({"params": {"id_token_hint": signed_in["id_token"], "post_logout_redirect_uri": BYE, "state": "xyz"}});
    let url = env.rp.run("logout_url", params).unwrap()["url"].as_str().unwrap().to_owned();
    let (at_idp, visited) = browser.follow(&url, BYE).await;
    let Landing::Page(StatusCode::OK, confirm) = at_idp else { panic!("expected the IdP's sign-out page, got {at_idp:?}") };
    let idp_page = visited.last().unwrap();
    assert!(idp_page.starts_with(&env.idp.issuer) && idp_page.contains("id_token_hint="), "{idp_page}");
    let (back, _) = browser.submit_form(idp_page, &confirm, &[("logout", "yes")], BYE).await;
    assert_eq!(back.param("state").as_deref(), Some("xyz"), "{back:?}");

    // The app's token is revoked, and the next sign-in asks the IdP again.
    assert!(env.app_userinfo(&signed_in).is_err());
    let (again, visited) = env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await;
    assert!(again.is_ok() && env.went_to_idp(&visited));
}

/// OIDC Front-Channel Logout 1.0 in headless Chromium: signing out at ssogate frames
/// the application's front-channel logout page with `iss` and `sid` (the page's CSP
/// allows that frame and nothing more), the app's server sees the load, and the
/// browser moves on through the IdP's sign-out back to the application.
#[tokio::test]
async fn signing_out_tells_the_application_through_the_browser() {
    let backend = AppBackend::start().await;
    // The application's pages are real (the browser loads them), on loopback.
    let (callback, bye) = (format!("{}/app/callback", backend.base), format!("{}/app/bye", backend.base));
    let app = json!({"redirect_uris": [callback], "post_logout_redirect_uris": [bye],
                     "frontchannel_logout_uri": backend.frontchannel_logout_uri, "frontchannel_logout_session_required": true});
    let env = Env::start(EnvOptions { app, ..Default::default() }).await;
    let rp = common::rp::RelyingParty { redirect_uri: callback.clone(), ..env.rp.clone() };
    let started = rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    let client_id = env.app["client_id"].as_str().unwrap();
    let logout_url = env.sso.url(&format!("/oauth2/logout?client_id={client_id}&post_logout_redirect_uri={bye}&state=st"));
    let input = json!({"authorize_url": started.url, "logout_url": logout_url, "app_prefix": callback,
                       "done_prefix": bye, "chromium": "/usr/bin/chromium"});
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
    // Off the runtime: the application's server answers the browser meanwhile.
    let run = move || std::process::Command::new("node").arg("frontchannel-e2e.mjs").arg(input.to_string()).current_dir(dir).output();
    let out = tokio::task::spawn_blocking(run).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{result}");

    let frames = result["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "{result}");
    let frame = url::Url::parse(frames[0].as_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = frame.query_pairs().into_owned().collect();
    assert_eq!(query.get("iss"), Some(&env.sso.base), "{frame}");
    assert!(query.get("sid").is_some_and(|s| s.starts_with("ses_")), "{frame}");
    assert_eq!(backend.frontchannel_loads(), [frame.query().unwrap().to_owned()], "Chromium loaded the frame");
    assert_eq!(result["csp_violations"], json!([]));
    assert!(result["final_url"].as_str().unwrap().starts_with(&bye), "{result}");
    // The session is over: the code the sign-in gave cannot be exchanged any more.
    assert!(rp.finish(&started, result["callback_url"].as_str().unwrap()).is_err());
}

#[tokio::test]
async fn an_idp_back_channel_logout_ends_the_session_and_reaches_the_app() {
    let backend = AppBackend::start().await;
    let env = Env::start(EnvOptions { app: json!({"backchannel_logout_uri": backend.backchannel_logout_uri}), ..Default::default() }).await;
    let browser = Browser::new();
    let signed_in = env.login(&browser, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();

    // The user signs out at the IdP itself; the IdP tells ssogate over the back channel.
    let end = format!("{}/session/end", env.idp.issuer);
    let (page, _) = browser.follow(&end, "https://nowhere.test").await;
    let Landing::Page(StatusCode::OK, confirm) = page else { panic!("{page:?}") };
    browser.submit_form(&end, &confirm, &[("logout", "yes")], "https://nowhere.test").await;
    if tokio::time::timeout(
        Duration::from_secs(10),
        eventually(Duration::from_secs(10), "the session ending", || async { env.app_userinfo(&signed_in).err() }),
    )
    .await
    .is_err()
    {
        panic!("{}", env.sso.log());
    }
    let (_, events) = env.sso.get("/organizations/acme/events?action=session.ended").await;
    assert_eq!(events["data"][0]["changes"]["reason"], "idp_logout", "{events}");
    assert!(events["data"][0]["actor"].as_str().unwrap().starts_with("idp:"));
    let tokens = backend.logout_tokens(1, Duration::from_secs(10)).await;
    let claims = env.rp.run("verify_logout_token", json!({"logout_token": tokens[0]})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sid"], signed_in["id_token_claims"]["sid"]);

    // Anything but a valid logout token from the connection's IdP is refused with an OAuth error.
    let uri = env.sso.url(&format!("/sso/backchannel-logout/{}", env.connection_id));
    for token in ["not-a-jwt", tokens[0].as_str()] {
        let r = env.sso.raw().post(&uri).form(&[("logout_token", token)]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
}

/// OIDC Front-Channel Logout 1.0, for IdPs that offer no back channel (LemonLDAP::NG):
/// the IdP loads the connection's front-channel URI in an iframe with its `iss` and
/// the session's `sid`. The page may be framed by that IdP alone; the named session
/// ends, the application is told over its back channel. A wrong `iss` or a missing
/// `sid` ends nothing (a cross-site page cannot sign users out by guessing).
#[tokio::test]
async fn an_idp_front_channel_logout_ends_the_session_it_names() {
    let backend = AppBackend::start().await;
    let env = Env::start(EnvOptions { app: json!({"backchannel_logout_uri": backend.backchannel_logout_uri}), ..Default::default() }).await;
    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    let user = signed_in["id_token_claims"]["sub"].as_str().unwrap();
    let sid = env.sessions_of(user).await[0]["idp_sid"].as_str().expect("the IdP names its session").to_owned();
    let (_, connection) = env.sso.get(&format!("/connections/{}", env.connection_id)).await;
    let uri = connection["frontchannel_logout_uri"].as_str().unwrap().to_owned();
    assert_eq!(uri, env.sso.url(&format!("/sso/frontchannel-logout/{}", env.connection_id)));
    let http = env.sso.raw();
    for refused in
        [format!("{uri}?iss=https://evil.example.test&sid={sid}"), format!("{uri}?iss={}", env.idp.issuer), format!("{uri}?sid={sid}")]
    {
        let r = http.get(&refused).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{refused}");
    }
    assert_eq!(env.sessions_of(user).await.len(), 1, "nothing ended");
    let wrong_sid = http.get(format!("{uri}?iss={}&sid=not-{sid}", env.idp.issuer)).send().await.unwrap();
    assert_eq!(wrong_sid.status(), StatusCode::OK);
    assert_eq!(env.sessions_of(user).await.len(), 1, "a guessed sid ends nothing");

    let r = http.get(format!("{uri}?iss={}&sid={sid}", env.idp.issuer)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("frame-ancestors {};", env.idp.issuer)), "only the IdP may frame it: {csp}");
    assert!(r.headers().get("x-frame-options").is_none());
    assert!(env.sessions_of(user).await.is_empty(), "the session ended");
    assert!(env.app_userinfo(&signed_in).is_err(), "its tokens stopped");
    let tokens = backend.logout_tokens(1, Duration::from_secs(10)).await;
    let claims = env.rp.run("verify_logout_token", json!({"logout_token": tokens[0]})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sid"], signed_in["id_token_claims"]["sid"]);
}

/// LemonLDAP::NG (Debian), a real IdP with front-channel logout only: its logout page
/// frames each RP's front-channel URI with `sid=<the user's subject>` (Portal/Issuer/
/// OpenIDConnect.pm `logout`), and its ID tokens carry no `sid` to match. By default
/// that ends nothing: anyone can load the URI, and a subject is no secret. With the
/// connection's `frontchannel_logout_by_subject` on, the admin accepts that trade-off
/// (a sign-out, never a sign-in) and the user's sessions through this connection that
/// carry no IdP session id end; another user's do not.
#[tokio::test]
async fn lemonldap_front_channel_logout_names_users_by_subject_only_when_allowed() {
    let backend = AppBackend::start().await;
    let app = json!({"backchannel_logout_uri": backend.backchannel_logout_uri});
    let env = Env::start(EnvOptions { provider: IdpSoftware::LemonLdap, app, ..Default::default() }).await;
    let (_, connection) = env.sso.get(&format!("/connections/{}", env.connection_id)).await;
    let frontchannel_uri = connection["frontchannel_logout_uri"].as_str().unwrap().to_owned();
    assert_eq!(connection["frontchannel_logout_by_subject"], false);
    let (_, bob) = sign_in(&env, "bob").await;
    let (first_browser, first) = sign_in(&env, "alice").await;
    let alice = first["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    assert!(env.sessions_of(&alice).await[0]["idp_sid"].is_null(), "LemonLDAP names no session");
    logout_at_idp(&env, &frontchannel_uri, first_browser).await;
    assert_eq!(env.sessions_of(&alice).await.len(), 1, "by default a subject ends nothing");
    assert!(env.app_userinfo(&first).is_ok());

    let allow = json!({"frontchannel_logout_by_subject": true});
    assert_eq!(env.sso.patch(&format!("/connections/{}", env.connection_id), allow).await.0, StatusCode::OK);
    let (second_browser, second) = sign_in(&env, "alice").await;
    assert_eq!(env.sessions_of(&alice).await.len(), 2);
    logout_at_idp(&env, &frontchannel_uri, second_browser).await;
    assert!(env.sessions_of(&alice).await.is_empty(), "both of her sessions through this connection ended");
    assert!(env.app_userinfo(&first).is_err() && env.app_userinfo(&second).is_err());
    assert_eq!(backend.logout_tokens(2, Duration::from_secs(10)).await.len(), 2, "the application heard of both");
    assert!(env.app_userinfo(&bob).is_ok(), "another user's session stays");
}

async fn sign_in(env: &Env, login: &str) -> (Browser, Value) {
    let browser = Browser::new();
    let signed_in = env.login(&browser, json!({"organization": "acme", "login_hint": login})).await.0.unwrap_or_else(|e| panic!("{e}"));
    (browser, signed_in)
}

/// The user signs out at LemonLDAP's portal, and her browser loads the page's iframe.
async fn logout_at_idp(env: &Env, frontchannel_uri: &str, browser: Browser) {
    let page = browser.http().get(format!("{}?logout=1", env.idp.issuer)).send().await.unwrap().text().await.unwrap();
    let frames: Vec<String> = page
        .split("<iframe")
        .skip(1)
        .filter_map(|tag| Some(tag.split("src=\"").nth(1)?.split('"').next()?.replace("&amp;", "&")))
        .collect();
    assert_eq!(frames.len(), 1, "one RP signed in: {page}");
    assert!(frames[0].starts_with(frontchannel_uri) && frames[0].contains("sid=alice"), "{frames:?}");
    let r = browser.http().get(&frames[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", frames[0]);
}

#[tokio::test]
async fn admins_list_and_revoke_sessions_and_idle_sessions_lapse() {
    // Long enough for two sign-ins on a loaded two-core machine (each runs openid-client
    // in node twice), short enough to wait out.
    let env = Env::start(EnvOptions { sso_args: vec!["--session-idle-timeout".into(), "10s".into()], ..short_lived() }).await;
    let (a, b) = (Browser::new(), Browser::new());
    let in_a = env.login(&a, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    let in_b = env.login(&b, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    let user_id = in_a["id_token_claims"]["sub"].as_str().unwrap();
    let sessions = env.sessions_of(user_id).await;
    assert_eq!(sessions.len(), 2);
    assert!(!serde_json::to_string(&sessions).unwrap().contains("token\":\""), "no token is ever shown: {sessions:?}");

    // Revoking one session ends only its tokens.
    let sid_a = in_a["id_token_claims"]["sid"].as_str().unwrap();
    assert_eq!(env.sso.delete(&format!("/users/{user_id}/sessions/{sid_a}")).await.0, StatusCode::NO_CONTENT);
    assert!(env.app_userinfo(&in_a).is_err());
    assert!(env.app_userinfo(&in_b).is_ok());
    common::assert_error(&env.sso.delete(&format!("/users/{user_id}/sessions/{sid_a}")).await, 404, "not_found", None);
    let (s, body) = env.sso.delete(&format!("/users/{user_id}/sessions")).await;
    assert_eq!((s, body["revoked"].as_u64()), (StatusCode::OK, Some(1)));
    assert!(env.app_userinfo(&in_b).is_err());

    // Activity keeps a session alive; idleness ends it.
    let c = Browser::new();
    env.login(&c, json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, visited) = env.login(&c, json!({"organization": "acme"})).await;
    assert!(!env.went_to_idp(&visited), "used within the idle timeout");
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let (_, visited) = env.login(&c, json!({"organization": "acme", "login_hint": "alice"})).await;
    assert!(env.went_to_idp(&visited), "idle past the timeout");
}
