//! Abuse limits: `authorize` (and front-channel logout) per client address, `token` per authenticated client
//! (failures per client and address), the admin API per client address — each answered with 429 and `Retry-After`, counted in
//! the metrics; behind a trusted proxy, clients are told apart by X-Forwarded-For.

use crate::common;

use common::{Options, Ssogate, ADMIN_TOKEN};
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn each_limit_refuses_with_429_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SSOGATE_RATE_LIMIT_ADMIN", "5"), ("SSOGATE_RATE_LIMIT_AUTHORIZE", "3"), ("SSOGATE_RATE_LIMIT_TOKEN", "2")];
    let opts = Options {
        env: env.map(|(k, v)| (k.into(), v.into())).into(),
        extra_args: vec!["--trusted-proxy".into(), "127.0.0.1/32".into()],
        ..Default::default()
    };
    let sso = Ssogate::start_with(dir.path(), opts).await;
    let http = sso.raw();
    let admin = |forwarded_for: &'static str| {
        http.get(sso.url("/api/v1/organizations")).bearer_auth(ADMIN_TOKEN).header("x-forwarded-for", forwarded_for).send()
    };

    // The admin API: five per minute for this (forwarded) client; a wrong token counts too.
    let wrong =
        http.get(sso.url("/api/v1/organizations")).bearer_auth("guess").header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    for _ in 0..4 {
        assert_eq!(admin("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    }
    let limited = admin("198.51.100.1").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = limited.json().await.unwrap();
    common::assert_error(&(StatusCode::TOO_MANY_REQUESTS, body), 429, "rate_limited", None);
    // Another client behind the same proxy has its own allowance.
    assert_eq!(admin("198.51.100.2").await.unwrap().status(), StatusCode::OK);
    // A forged left-most entry does not buy a new allowance.
    assert_eq!(admin("203.0.113.50, 198.51.100.1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // Nor does a forged header line of its own before the proxy's line.
    let two_lines = http
        .get(sso.url("/api/v1/organizations"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-forwarded-for", "203.0.113.51")
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(two_lines.status(), StatusCode::TOO_MANY_REQUESTS);

    // authorize: three per minute per address, then a page (never a redirect); front-channel
    // logouts carry no secret either: as many per address, counted apart.
    let pages = [
        ("/oauth2/authorize?client_id=nobody&response_type=code", "Too many sign-in attempts"),
        ("/sso/frontchannel-logout/conn_none?iss=https://idp.example.test&sid=alice", "Too many sign-out requests"),
    ];
    for (path, refusal) in pages {
        for _ in 0..3 {
            assert_eq!(http.get(sso.url(path)).send().await.unwrap().status(), StatusCode::BAD_REQUEST, "{path}: an error page");
        }
        let limited = http.get(sso.url(path)).send().await.unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert!(limited.headers().contains_key(RETRY_AFTER));
        assert!(limited.text().await.unwrap().contains(refusal));
    }

    // token: failed client authentications, two per minute per (client, address) —
    // never the genuine client's own allowance (tests/it/security.rs) — and requests
    // naming no registered client, two per minute per address.
    let (_, app) = sso.post("/applications", serde_json::json!({"name": "A", "redirect_uris": ["https://a.example.test/cb"]})).await;
    let client = app["client_id"].as_str().unwrap().to_owned();
    let token = |client: String, from: &'static str| {
        http.post(sso.url("/oauth2/token"))
            .header("x-forwarded-for", from)
            .form(&[("grant_type", "authorization_code"), ("code", "x"), ("client_id", &client), ("client_secret", "guess")])
            .send()
    };
    for _ in 0..2 {
        assert_eq!(token(client.clone(), "198.51.100.1").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let limited = token(client.clone(), "198.51.100.1").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key(RETRY_AFTER));
    assert_eq!(limited.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
    assert_eq!(
        token(client.clone(), "198.51.100.2").await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "each address has its own allowance"
    );
    for _ in 0..2 {
        assert_eq!(token("client-nobody".into(), "198.51.100.3").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        token("client-other".into(), "198.51.100.3").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "unknown clients count by address"
    );

    let metrics = http.get(sso.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
    for limit in ["admin", "authorize", "client_auth_failures", "unattributed_clients"] {
        assert!(common::metric(&metrics, "ssogate_rate_limited_total", &[&format!("limit=\"{limit}\"")]) >= 1.0, "{limit}: {metrics}");
    }
}

#[tokio::test]
async fn the_request_size_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { extra_args: vec!["--max-request-bytes".into(), "4096".into()], ..Default::default() };
    let sso = Ssogate::start_with(dir.path(), opts).await;
    let post = |name: String| {
        sso.raw().post(sso.url("/api/v1/organizations")).bearer_auth(ADMIN_TOKEN).json(&serde_json::json!({"name": name})).send()
    };
    // Under the limit, the name's own rule speaks; over it, the size does, on every route.
    let under = post("x".repeat(3000)).await.unwrap();
    assert_eq!(under.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let over = post("x".repeat(5000)).await.unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = over.json().await.unwrap();
    common::assert_error(&(StatusCode::PAYLOAD_TOO_LARGE, body), 413, "body_too_large", None);
    let token = sso.raw().post(sso.url("/oauth2/token")).form(&[("code", "x".repeat(5000))]).send().await.unwrap();
    assert_eq!(token.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
