//! `POST /connections/{id}/test` against the real oidc-provider and against broken
//! identity providers.

use crate::common;

use common::fake_idp::FakeIdp;
use common::idp::TestIdp;
use common::{Options, Ssogate};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn connection(sso: &Ssogate, discovery_url: &str) -> String {
    if sso.get("/organizations/acme").await.0 == StatusCode::NOT_FOUND {
        sso.post("/organizations", json!({"name": "Acme"})).await;
    }
    let (s, c) = sso
        .post(
            "/organizations/acme/connections",
            json!({"name": "IdP", "client_id": "ssogate", "client_secret": "secret-secret", "discovery_url": discovery_url}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c["id"].as_str().unwrap().to_owned()
}

async fn test_report(sso: &Ssogate, id: &str) -> Value {
    let (s, report) = sso.post(&format!("/connections/{id}/test"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    report
}

fn codes(report: &Value, key: &str) -> Vec<String> {
    report[key].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap().to_owned()).collect()
}

/// The real oidc-provider, with the connection's client registered: everything
/// checks out, the client credentials included; with a wrong secret the test says so
/// (the token endpoint answers `invalid_client` to a code that cannot be valid).
#[tokio::test]
async fn a_real_openid_provider_passes_and_a_wrong_secret_is_caught() {
    let client = json!({"client_id": "ssogate", "client_secret": "secret-secret", "redirect_uris": ["https://unused.example.test/cb"],
                        "grant_types": ["authorization_code", "refresh_token"]});
    let idp = TestIdp::start(json!({"clients": [client]}));
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    // The issuer URL alone is enough: the well-known suffix is added.
    let id = connection(&sso, &idp.issuer).await;
    let report = test_report(&sso, &id).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["issuer"], idp.issuer);
    assert_eq!(report["pkce"], true);
    assert!(report["signing_keys"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["problems"], json!([]));
    assert_eq!(report["client_credentials"], "accepted");
    assert_eq!(report["refresh_tokens"], true);
    assert_eq!(report["logout_channels"], json!(["back_channel", "end_session"]));
    assert!(report["signing_algs"].as_array().unwrap().contains(&json!("RS256")), "{report}");

    let (s, _) = sso.patch(&format!("/connections/{id}"), json!({"client_secret": "not-the-secret"})).await;
    assert_eq!(s, StatusCode::OK);
    let report = test_report(&sso, &id).await;
    assert_eq!((report["ok"].clone(), report["client_credentials"].clone()), (json!(false), json!("refused")), "{report}");
    assert_eq!(codes(&report, "problems"), ["invalid_client"]);
}

#[tokio::test]
async fn broken_providers_are_reported_precisely() {
    let fake = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;

    // Issuer mismatch, a missing token endpoint, and a JWKS with only an HMAC key.
    fake.set(
        "/bad/.well-known/openid-configuration",
        200,
        json!({
            "issuer": "https://elsewhere.example.com",
            "authorization_endpoint": fake.url("/bad/auth"),
            "jwks_uri": fake.url("/bad/jwks"),
            "response_types_supported": ["code"],
        })
        .to_string(),
    );
    fake.set("/bad/jwks", 200, json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string());
    let id = connection(&sso, &fake.url("/bad")).await;
    let report = test_report(&sso, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(codes(&report, "problems"), ["issuer_mismatch", "missing_endpoint", "no_signing_keys"], "{report}");
    assert_eq!(codes(&report, "warnings"), ["no_userinfo", "no_pkce"]);

    // Garbage instead of JSON.
    fake.set("/garbage/.well-known/openid-configuration", 200, "<html>login</html>");
    let id = connection(&sso, &fake.url("/garbage")).await;
    assert_eq!(codes(&test_report(&sso, &id).await, "problems"), ["invalid_discovery"]);

    // An error status.
    let id = connection(&sso, &fake.url("/missing")).await;
    let report = test_report(&sso, &id).await;
    assert_eq!(codes(&report, "problems"), ["discovery_unreachable"]);
    assert!(report["problems"][0]["message"].as_str().unwrap().contains("404"));

    // An oversized document.
    fake.set("/huge/.well-known/openid-configuration", 200, format!("{{\"issuer\": \"{}\"}}", "x".repeat(400_000)));
    let id = connection(&sso, &fake.url("/huge")).await;
    let report = test_report(&sso, &id).await;
    assert!(report["problems"][0]["message"].as_str().unwrap().contains("larger than"), "{report}");

    // Nobody listening.
    let port = common::free_port();
    let id = connection(&sso, &format!("http://127.0.0.1:{port}")).await;
    let report = test_report(&sso, &id).await;
    assert_eq!(codes(&report, "problems"), ["discovery_unreachable"]);
}

#[tokio::test]
async fn outside_dev_mode_http_and_private_idps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(
        dir.path(),
        Options { dev: false, extra_args: vec!["--allow-idp-network".into(), "10.20.0.0/16".into()], ..Default::default() },
    )
    .await;
    sso.post("/organizations", json!({"name": "Acme"})).await;
    let create = |url: &str| {
        let body = json!({"name": "IdP", "client_id": "a", "client_secret": "b", "discovery_url": url});
        sso.post("/organizations/acme/connections", body)
    };
    let got = create("http://127.0.0.1:9/x").await;
    common::assert_error(&got, 422, "invalid_field", Some("discovery_url"));
    assert!(got.1["error"]["message"].as_str().unwrap().contains("https"));
    let got = create("https://localhost/x").await;
    assert!(got.1["error"]["message"].as_str().unwrap().contains("--dev"), "{got:?}");
    let got = create("https://10.21.0.1/x").await;
    assert!(got.1["error"]["message"].as_str().unwrap().contains("--allow-idp-network"), "{got:?}");
    // An operator-allowed private network is accepted.
    let (s, _) = create("https://10.20.0.1/x").await;
    assert_eq!(s, StatusCode::CREATED);
}
