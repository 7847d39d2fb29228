//! The admin web console: its session and CSRF rules over HTTP, and an end-to-end
//! walk through it in headless Chromium (tests/idp/console-e2e.mjs, playwright-core)
//! against the real OP, with screenshots of every page saved under
//! `<target>/tmp/console-screenshots`.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::idp::TestIdp;
use common::{Ssogate, ADMIN_TOKEN};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Signs in to the console; returns its cookie and CSRF token.
async fn console_sign_in(sso: &Ssogate, token: &str) -> Result<(String, String), (StatusCode, Value)> {
    let resp = sso.raw().post(sso.url("/admin/session")).json(&json!({"token": token})).send().await.unwrap();
    let status = resp.status();
    let cookie = resp.headers().get(SET_COOKIE).map(|c| c.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    match cookie {
        Some(c) if status == StatusCode::OK => Ok((c.split(';').next().unwrap().to_owned(), body["csrf"].as_str().unwrap().to_owned())),
        _ => Err((status, body)),
    }
}

#[tokio::test]
async fn the_console_session_needs_the_admin_token_and_its_csrf_header() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    let page = sso.raw().get(sso.url("/admin")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));

    let (status, body) = console_sign_in(&sso, "wrong-token-of-sufficient-length").await.unwrap_err();
    common::assert_error(&(status, body), 401, "unauthorized", Some("token"));
    let (cookie, csrf) = console_sign_in(&sso, ADMIN_TOKEN).await.unwrap();
    let set_cookie = sso.raw().post(sso.url("/admin/session")).json(&json!({"token": ADMIN_TOKEN})).send().await.unwrap();
    let attributes = set_cookie.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"), "{attributes}");

    let call = |with_csrf: Option<&str>| {
        let mut req = sso.raw().post(sso.url("/api/v1/organizations")).header(COOKIE, &cookie).json(&json!({"name": "Initech"}));
        if let Some(c) = with_csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };
    // The cookie alone, as a forged cross-site request would carry it, is refused.
    let r = call(None).await.unwrap();
    let status = r.status();
    common::assert_error(&(status, r.json().await.unwrap()), 403, "csrf_failed", None);
    let r = call(Some("not-the-token")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = call(Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, events) = sso.get("/events").await;
    let (_, org_events) = sso.get("/organizations/initech/events").await;
    assert_eq!(org_events["data"][0]["actor"], "admin_console", "{events} {org_events}");

    // Signing out, or rotating the admin token, ends the session.
    let current = |cookie: String| sso.raw().get(sso.url("/admin/session")).header(COOKIE, cookie).send();
    assert_eq!(current(cookie.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(current("ssogate_console=v1:forged".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let restarted = sso.restart_with_env(&[("SSOGATE_ADMIN_TOKEN", "another-admin-token-0123456789abcdef")]).await;
    let r = restarted.raw().get(restarted.url("/admin/session")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a session opened with the old token is over");
    // A try-it sign-in needs the console session.
    let r = restarted.raw().get(restarted.url("/admin/try/conn_x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_sets_up_an_organization_in_the_browser() {
    assert!(std::path::Path::new(CHROMIUM).exists(), "the console tests drive Debian's Chromium: apt-get install chromium (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    let secret = "globex-client-secret-at-the-idp";
    let idp = TestIdp::start(json!({
        // The connection's own redirect URI is registered once the console shows it.
        "clients": [{"client_id": "ssogate-globex", "client_secret": secret, "redirect_uris": ["https://not-yet.example.test/cb"]}],
        "accounts": {"grace": {"email": "grace@globex.test", "email_verified": true, "given_name": "Grace", "family_name": "Hopper",
                               "groups": ["Engineering", "Sales Team"]}},
    }));
    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::remove_dir_all(&screenshots).ok();
    let input = json!({"base": sso.base, "token": ADMIN_TOKEN, "op_issuer": idp.issuer, "client_id": "ssogate-globex",
                       "client_secret": secret, "screenshots": screenshots, "chromium": CHROMIUM});
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("console-e2e.mjs")
            .arg(input.to_string())
            .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp"))
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&run.stdout);
    let outcome: Value = serde_json::from_str(printed.trim())
        .unwrap_or_else(|_| panic!("console-e2e.mjs printed {printed:?}; stderr: {}", String::from_utf8_lossy(&run.stderr)));
    assert!(run.status.success() && outcome["ok"] == true, "{outcome:#}\nscreenshots in {}", screenshots.display());
    eprintln!("console screenshots: {} in {}", outcome["screenshots"], screenshots.display());

    // What the browser did is what the directory holds.
    let (_, conn) = sso.get(&format!("/connections/{}", outcome["connection_id"].as_str().unwrap())).await;
    assert_eq!(conn["group_sync"]["mapping"], "Engineering -> engineering, Sales Team -> sales");
    assert_eq!(conn["group_sync"]["enabled"], true);
    let (_, users) = sso.get("/organizations/globex-corp/users").await;
    let emails: Vec<&str> = users["data"].as_array().unwrap().iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!(emails, ["walter@globex.test", "olga@globex.test"], "the try-it sign-in created nobody; the directory pushed olga");
    let (_, d) = sso.get(&format!("/directories/{}", outcome["directory_id"].as_str().unwrap())).await;
    assert_eq!(d["user_count"], 1, "{d}");
    let (_, groups) = sso.get("/organizations/globex-corp/groups").await;
    assert!(!groups["data"].as_array().unwrap().iter().any(|g| g["name"] == "sales"), "nor the group it would create");
    let (_, e) = sso.get("/organizations/globex-corp/entitlements").await;
    assert_eq!(e["max_users"], 10);
    let shots = std::fs::read_dir(&screenshots).unwrap().count();
    assert!(shots >= 19, "a screenshot of each page: {shots}");
    assert!(!sso.log().contains(secret), "the IdP client secret never reaches the log");
}
