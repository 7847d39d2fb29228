//! The admin API over HTTP against the real binary on SQLite.

use crate::common;

use common::{assert_error, Options, Ssogate, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn conn_body(discovery_url: &str) -> Value {
    json!({"name": "Okta", "client_id": "client-abc", "client_secret": "very-secret-value-42", "discovery_url": discovery_url})
}

#[tokio::test]
async fn everything_created_survives_a_restart_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;

    let (s, org) = sso.post("/organizations", json!({"name": "Acme Corp", "domains": ["acme.com", "Acme.io"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    assert_eq!(org["slug"], "acme-corp");
    assert_eq!(org["domains"], json!(["acme.com", "acme.io"]));
    assert!(org["id"].as_str().unwrap().starts_with("org_"));

    let (s, conn) = sso.post("/organizations/acme-corp/connections", conn_body("https://acme.okta.com")).await;
    assert_eq!(s, StatusCode::CREATED, "{conn}");
    assert!(conn["id"].as_str().unwrap().starts_with("conn_"));
    // Each connection answers at its own redirect URI (RFC 9700 §4.4.2).
    assert_eq!(conn["redirect_uri"], sso.url(&format!("/sso/callback/{}", conn["id"].as_str().unwrap())));
    assert_eq!(conn["own_redirect_uri"], conn["redirect_uri"]);
    assert_eq!(conn["shared_redirect_uri"], false);
    assert_eq!(conn["discovery_url"], "https://acme.okta.com/.well-known/openid-configuration");
    assert!(conn.get("client_secret").is_none(), "secret returned: {conn}");

    let (s, app) = sso.post("/applications", json!({"name": "Dashboard", "redirect_uris": ["https://app.example.com/cb"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    let app_secret = app["client_secret"].as_str().unwrap().to_owned();
    assert!(app_secret.len() >= 40);
    assert!(app["client_id"].as_str().unwrap().starts_with("client_"));

    let sso = sso.restart().await;
    let (s, got) = sso.get(&format!("/organizations/{}", org["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["name"], "Acme Corp");
    let (_, conns) = sso.get("/organizations/acme-corp/connections").await;
    assert_eq!(conns["data"][0]["id"], conn["id"]);
    assert!(conns["data"][0].get("client_secret").is_none());
    let (s, got_app) = sso.get(&format!("/applications/{}", app["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got_app["redirect_uris"], json!(["https://app.example.com/cb"]));
    assert!(got_app.get("client_secret").is_none());

    // Secrets are not in the database files in clear, nor in the log.
    let mut db_bytes = Vec::new();
    for f in ["ssogate.db", "ssogate.db-wal"] {
        db_bytes.extend(std::fs::read(dir.path().join(f)).unwrap_or_default());
    }
    let db_text = String::from_utf8_lossy(&db_bytes);
    for secret in ["very-secret-value-42", app_secret.as_str(), ADMIN_TOKEN] {
        assert!(!db_text.contains(secret), "`{secret}` is stored in clear");
        assert!(!sso.log().contains(secret), "`{secret}` is in the log");
    }
}

#[tokio::test]
async fn a_generated_admin_token_is_printed_once_and_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), Options { admin_token: None, ..Default::default() }).await;
    let printed = sso.stdout("ssogate_admin_", Duration::from_secs(10));
    let token = printed
        .split_whitespace()
        .find(|w| w.starts_with("ssogate_admin_"))
        .unwrap_or_else(|| panic!("no token printed: {printed:?}"))
        .to_owned();
    let (s, _) = sso.api_as(Some(&token), Method::GET, "/organizations", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!sso.log().contains(&token), "the token went to the log");
    assert!(dir.path().join("ssogate.db.key").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ssogate.db.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let sso = sso.restart().await;
    // It would have been printed before ssogate became ready; give the pipe a moment.
    let printed = sso.stdout("ssogate_admin_", Duration::from_millis(500));
    assert!(!printed.contains("ssogate_admin_"), "printed again: {printed}");
    let (s, _) = sso.api_as(Some(&token), Method::GET, "/organizations", None).await;
    assert_eq!(s, StatusCode::OK);
    let db = std::fs::read(dir.path().join("ssogate.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&token));
}

#[tokio::test]
async fn the_admin_api_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    for (method, path) in [
        (Method::GET, "/organizations"),
        (Method::POST, "/organizations"),
        (Method::GET, "/applications"),
        (Method::DELETE, "/connections/conn_x"),
        (Method::GET, "/events"),
    ] {
        let got = sso.api_as(None, method.clone(), path, None).await;
        assert_error(&got, 401, "unauthorized", None);
        let got = sso.api_as(Some("wrong-token-wrong-token-wrong"), method, path, None).await;
        assert_error(&got, 401, "unauthorized", None);
    }
    let resp = sso.raw().get(sso.url("/api/v1/organizations")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn bad_input_on_every_endpoint_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), Options { dev: false, ..Default::default() }).await;
    let (_, org) = sso.post("/organizations", json!({"name": "Acme", "slug": "acme", "domains": ["acme.com"]})).await;
    let (_, conn) = sso.post("/organizations/acme/connections", conn_body("https://acme.okta.com")).await;
    let (_, app) = sso.post("/applications", json!({"name": "App", "redirect_uris": ["https://a.example.com/cb"]})).await;
    let (_, group) = sso.post("/organizations/acme/groups", json!({"name": "engineers"})).await;
    let (_, user) = sso.post("/organizations/acme/users", json!({"email": "jane@acme.com"})).await;
    let conn_path = format!("/connections/{}", conn["id"].as_str().unwrap());
    let app_path = format!("/applications/{}", app["id"].as_str().unwrap());
    let group_path = format!("/groups/{}", group["id"].as_str().unwrap());
    let user_path = format!("/users/{}", user["id"].as_str().unwrap());

    // (method, path, body, expected status, error code, field named)
    type Case<'a> = (Method, String, Value, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        // organizations
        (Method::POST, "/organizations".into(), json!({"name": "  "}), 422, "invalid_field", Some("name")),
        (Method::POST, "/organizations".into(), json!({}), 422, "missing_field", Some("name")),
        (Method::POST, "/organizations".into(), json!({"name": "X", "colour": "red"}), 422, "unknown_field", Some("colour")),
        (Method::POST, "/organizations".into(), json!({"name": "X", "slug": "Bad Slug"}), 422, "invalid_field", Some("slug")),
        (Method::POST, "/organizations".into(), json!({"name": "X", "slug": "acme"}), 409, "conflict", Some("slug")),
        (
            Method::POST,
            "/organizations".into(),
            json!({"name": "X", "domains": ["ok.com", "not a domain"]}),
            422,
            "invalid_field",
            Some("domains[1]"),
        ),
        (
            Method::POST,
            "/organizations".into(),
            json!({"name": "X", "domains": ["x.com", "ACME.com"]}),
            409,
            "conflict",
            Some("domains[1]"),
        ),
        (Method::POST, "/organizations".into(), json!({"name": 5}), 422, "invalid_field", Some("name")),
        (Method::PATCH, "/organizations/acme".into(), json!({"slug": ""}), 422, "invalid_field", Some("slug")),
        (Method::PATCH, "/organizations/nope".into(), json!({"name": "Y"}), 404, "not_found", None),
        // connections
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            conn_body("http://acme.okta.com"),
            422,
            "invalid_field",
            Some("discovery_url"),
        ),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            conn_body("https://127.0.0.1:9000"),
            422,
            "invalid_field",
            Some("discovery_url"),
        ),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            conn_body("https://169.254.169.254/latest"),
            422,
            "invalid_field",
            Some("discovery_url"),
        ),
        (Method::POST, "/organizations/acme/connections".into(), conn_body("not a url"), 422, "invalid_field", Some("discovery_url")),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            json!({"name": "Okta", "client_id": "a", "discovery_url": "https://x.example.com"}),
            422,
            "missing_field",
            Some("client_secret"),
        ),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            json!({"name": "Okta", "client_id": "a", "client_secret": "b", "discovery_url": "https://x.example.com", "scopes": ["email"]}),
            422,
            "invalid_field",
            Some("scopes"),
        ),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            json!({"name": "Okta", "client_id": "a", "client_secret": "b", "discovery_url": "https://x.example.com", "provisioning": "sometimes"}),
            422,
            "invalid_field",
            Some("provisioning"),
        ),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            json!({"name": "Okta", "client_id": "a", "client_secret": "b", "discovery_url": "https://x.example.com", "group_sync": {"enabled": true, "mapping": "Sales Team -> sales, Marketing"}}),
            422,
            "invalid_field",
            Some("group_sync.mapping"),
        ),
        (
            Method::POST,
            "/organizations/acme/connections".into(),
            json!({"name": "Okta", "client_id": "a", "client_secret": "b", "discovery_url": "https://x.example.com", "group_sync": {"enabled": true, "bogus": 1}}),
            422,
            "unknown_field",
            Some("group_sync.bogus"),
        ),
        (Method::POST, "/organizations/nope/connections".into(), conn_body("https://acme.okta.com"), 404, "not_found", None),
        (Method::PATCH, conn_path.clone(), json!({"logout_url": "javascript:alert(1)"}), 422, "invalid_field", Some("logout_url")),
        (Method::PATCH, conn_path.clone(), json!({"client_secret": ""}), 422, "invalid_field", Some("client_secret")),
        (Method::PATCH, "/connections/conn_nope".into(), json!({"name": "x"}), 404, "not_found", None),
        // applications
        (Method::POST, "/applications".into(), json!({"name": "A", "redirect_uris": []}), 422, "invalid_field", Some("redirect_uris")),
        (
            Method::POST,
            "/applications".into(),
            json!({"name": "A", "redirect_uris": ["http://evil.example.com/cb"]}),
            422,
            "invalid_field",
            Some("redirect_uris[0]"),
        ),
        (
            Method::POST,
            "/applications".into(),
            json!({"name": "A", "redirect_uris": ["https://a.example.com/cb#frag"]}),
            422,
            "invalid_field",
            Some("redirect_uris[0]"),
        ),
        (
            Method::POST,
            "/applications".into(),
            json!({"name": "A", "redirect_uris": ["https://a.example.com/cb"], "post_logout_redirect_uris": ["javascript:x"]}),
            422,
            "invalid_field",
            Some("post_logout_redirect_uris[0]"),
        ),
        (Method::PATCH, app_path.clone(), json!({"client_secret": "mine"}), 422, "unknown_field", Some("client_secret")),
        (Method::POST, "/applications/app_nope/rotate-secret".into(), json!({}), 404, "not_found", None),
        // users
        (Method::POST, "/organizations/acme/users".into(), json!({"email": "not-an-email"}), 422, "invalid_field", Some("email")),
        (Method::POST, "/organizations/acme/users".into(), json!({"first_name": "Jane"}), 422, "invalid_field", Some("email")),
        (Method::POST, "/organizations/acme/users".into(), json!({"email": "JANE@acme.com"}), 409, "conflict", Some("email")),
        (
            Method::POST,
            "/organizations/acme/users".into(),
            json!({"email": "bob@acme.com", "groups": ["admin", "ghosts"]}),
            422,
            "invalid_field",
            Some("groups[1]"),
        ),
        (Method::PATCH, user_path.clone(), json!({"email": null}), 422, "invalid_field", Some("email")),
        // groups
        (Method::POST, "/organizations/acme/groups".into(), json!({"name": "engineers"}), 409, "conflict", Some("name")),
        (Method::POST, "/organizations/acme/groups".into(), json!({"name": "a, b"}), 422, "invalid_field", Some("name")),
        (
            Method::POST,
            "/organizations/acme/groups".into(),
            json!({"name": "ops", "permissions": ["Manage Apps"]}),
            422,
            "invalid_field",
            Some("permissions[0]"),
        ),
        (Method::PATCH, group_path.clone(), json!({"name": "admin"}), 409, "conflict", Some("name")),
        // lists and events
        (Method::GET, "/organizations?limit=0".into(), Value::Null, 422, "invalid_field", Some("limit")),
        (Method::GET, "/organizations?limit=abc".into(), Value::Null, 422, "invalid_field", Some("limit")),
        (Method::GET, "/organizations?sort=name".into(), Value::Null, 422, "unknown_field", Some("sort")),
        (Method::GET, "/organizations/acme/events?limit=1000".into(), Value::Null, 422, "invalid_field", Some("limit")),
        (Method::GET, "/nothing-here".into(), Value::Null, 404, "not_found", None),
        (Method::PUT, "/organizations".into(), json!({}), 405, "method_not_allowed", None),
    ];
    for (method, path, body, status, code, field) in cases {
        let body = (!body.is_null()).then_some(body);
        let got = sso.api(method.clone(), &path, body.clone()).await;
        assert!(got.0.as_u16() == status && got.1["error"]["code"] == code, "{method} {path} {body:?} -> {got:?}");
        assert_error(&got, status, code, field);
    }

    // Nothing was half-written: the organization is as created, one connection, one user.
    let (_, o) = sso.get("/organizations/acme").await;
    assert_eq!(o["domains"], org["domains"]);
    let (_, orgs) = sso.get("/organizations").await;
    assert_eq!(orgs["data"].as_array().unwrap().len(), 1);
    let (_, users) = sso.get("/organizations/acme/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
    let (_, conns) = sso.get("/organizations/acme/connections").await;
    assert_eq!(conns["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_bodies_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    let url = sso.url("/api/v1/organizations");
    let send =
        |body: Vec<u8>, ctype: &'static str| sso.raw().post(&url).bearer_auth(ADMIN_TOKEN).header("content-type", ctype).body(body).send();
    let r = send(b"{\"name\": ".to_vec(), "application/json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "malformed_json");
    let r = send(b"name=x".to_vec(), "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!(r.status(), 415);
    let r = send(format!("{{\"name\": \"{}\"}}", "x".repeat(100_000)).into_bytes(), "application/json").await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "body_too_large");

    // serde reads a struct from an array of its fields; found by schemathesis, where
    // `[null, null]` as a PATCH body cleared a user's email.
    let r = send(b"[\"Acme\"]".to_vec(), "application/json").await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_body");
    let (_, org) = sso.post("/organizations", json!({"name": "Acme", "slug": "acme"})).await;
    let conn =
        json!({"name": "IdP", "client_id": "c", "client_secret": "s", "discovery_url": "http://127.0.0.1:9/x", "group_sync": [true]});
    assert_error(&sso.post("/organizations/acme/connections", conn).await, 422, "invalid_field", Some("group_sync"));
    // PATCH: `null` clears what may be empty and is refused for what may not.
    assert_error(&sso.patch("/organizations/acme", json!({"slug": null})).await, 422, "invalid_field", Some("slug"));
    assert_error(&sso.patch("/organizations/acme", json!({"slug": " acme2"})).await, 422, "invalid_field", Some("slug"));
    assert_eq!(sso.get("/organizations/acme").await.1, org, "a refused change changed something");
}

#[tokio::test]
async fn organizations_by_id_or_slug_update_delete_and_paginate() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    let mut ids = vec![];
    for i in 0..5 {
        let (s, o) = sso.post("/organizations", json!({"name": "Same Name", "domains": [format!("d{i}.example.com")]})).await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(o["id"].as_str().unwrap().to_owned());
    }
    // A derived slug that is taken gets a free variant; a chosen one is a conflict.
    let (_, o) = sso.get(&format!("/organizations/{}", ids[1])).await;
    assert_eq!(o["slug"], "same-name-2");

    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/organizations?limit=2&cursor={c}"),
            None => "/organizations?limit=2".into(),
        };
        let (s, page) = sso.get(&path).await;
        assert_eq!(s, StatusCode::OK);
        seen.extend(page["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let (s, o) = sso.patch("/organizations/same-name", json!({"name": "Renamed", "slug": "renamed", "domains": ["d1.example.com"]})).await;
    assert_error(&(s, o.clone()), 409, "conflict", Some("domains[0]"));
    let (s, o) = sso.patch("/organizations/same-name", json!({"name": "Renamed", "slug": "renamed", "domains": ["new.example.com"]})).await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["domains"], json!(["new.example.com"]));
    let (s, _) = sso.get("/organizations/renamed").await;
    assert_eq!(s, StatusCode::OK);

    // Deleting takes the organization's connections, users and groups with it.
    sso.post("/organizations/renamed/connections", conn_body("https://acme.okta.com")).await;
    let (_, user) = sso.post("/organizations/renamed/users", json!({"email": "a@new.example.com"})).await;
    let (s, _) = sso.delete("/organizations/renamed").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(sso.get("/organizations/renamed").await.0, StatusCode::NOT_FOUND);
    assert_eq!(sso.get(&format!("/users/{}", user["id"].as_str().unwrap())).await.0, StatusCode::NOT_FOUND);
    // Its domain is free again.
    let (s, _) = sso.post("/organizations", json!({"name": "Next", "domains": ["new.example.com"]})).await;
    assert_eq!(s, StatusCode::CREATED);
    // The trail of the deleted organization remains.
    let (s, events) = sso.get(&format!("/organizations/{}/events?limit=1", ids[0])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(events["data"][0]["action"], "organization.deleted");
    assert_error(&sso.get("/organizations/no-such-org/events").await, 404, "not_found", None);
}

#[tokio::test]
async fn connections_patch_and_audit_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    sso.post("/organizations", json!({"name": "Acme"})).await;
    let (_, conn) = sso.post("/organizations/acme/connections", conn_body("https://acme.okta.com")).await;
    let path = format!("/connections/{}", conn["id"].as_str().unwrap());
    let (s, c) = sso
        .patch(&path, json!({"client_secret": "rotated-secret-99", "scopes": ["openid", "email", "groups"], "logout_url": "https://acme.okta.com/logout", "group_sync": {"enabled": true, "claim": "realm_access.roles", "mapping": "Marketing Team -> marketing"}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["scopes"], json!(["openid", "email", "groups"]));
    assert_eq!(c["group_sync"]["mapping"], "Marketing Team -> marketing");
    let (s, c) = sso.patch(&path, json!({"logout_url": null})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(c["logout_url"].is_null());

    let (_, events) = sso.get("/organizations/acme/events").await;
    let events = events["data"].as_array().unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["connection.updated", "connection.updated", "connection.created", "organization.created"]);
    let update = &events[1];
    assert_eq!(update["actor"], "admin_token");
    assert_eq!(update["target_id"], conn["id"]);
    assert_eq!(update["changes"]["client_secret"], "changed");
    assert_eq!(update["changes"]["scopes"]["to"], json!(["openid", "email", "groups"]));
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("rotated-secret-99") && !all.contains("very-secret-value-42"), "secret in audit log");

    let (_, filtered) = sso.get("/organizations/acme/events?action=connection.created").await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);

    let (s, _) = sso.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(sso.get(&path).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn applications_rotate_secrets_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    let (_, app) = sso
        .post(
            "/applications",
            json!({"name": "CLI", "redirect_uris": ["http://127.0.0.1:8400/cb", "com.example.cli:/oauth"], "expose_idp_tokens": true}),
        )
        .await;
    let path = format!("/applications/{}", app["id"].as_str().unwrap());
    let (s, rotated) = sso.post(&format!("{path}/rotate-secret"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(rotated["client_secret"], app["client_secret"]);
    assert_eq!(rotated["client_id"], app["client_id"]);
    let (s, a) = sso.patch(&path, json!({"name": "CLI v2", "expose_idp_tokens": false})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["expose_idp_tokens"], false);
    let (_, events) = sso.get(&format!("/events?target_id={}", app["id"].as_str().unwrap())).await;
    let actions: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["application.updated", "application.secret_rotated", "application.created"]);
    assert!(!events.to_string().contains(rotated["client_secret"].as_str().unwrap()));
    let (s, _) = sso.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = sso.get("/applications").await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn users_and_groups_with_roles() {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start(dir.path()).await;
    sso.post("/organizations", json!({"name": "Acme"})).await;
    let (_, groups) = sso.get("/organizations/acme/groups").await;
    let names: Vec<&str> = groups["data"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "builder", "end-user"]);
    let admin_group = groups["data"][0]["id"].as_str().unwrap().to_owned();

    let (s, g) = sso
        .post("/organizations/acme/groups", json!({"name": "All Apps", "permissions": ["manage_apps"], "description": "app builders"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let (_, u) =
        sso.post("/organizations/acme/users", json!({"email": "Jane@Acme.com", "first_name": "Jane", "groups": ["All Apps"]})).await;
    assert_eq!(u["email"], "jane@acme.com");
    assert_eq!(u["groups"], json!(["All Apps"]));
    assert_eq!(u["role"], "builder");
    let path = format!("/users/{}", u["id"].as_str().unwrap());
    let (_, u) = sso.patch(&path, json!({"groups": ["admin", "All Apps"], "last_name": "Doe"})).await;
    assert_eq!(u["role"], "admin");
    assert_eq!(u["last_name"], "Doe");
    let (_, u) = sso.patch(&path, json!({"groups": []})).await;
    assert_eq!(u["role"], "end-user");

    // Default groups can be described but not renamed or deleted.
    let got = sso.patch(&format!("/groups/{admin_group}"), json!({"name": "owners"})).await;
    assert_error(&got, 422, "invalid_field", Some("name"));
    let got = sso.delete(&format!("/groups/{admin_group}")).await;
    assert_error(&got, 409, "default_group", None);
    let (s, _) = sso.delete(&format!("/groups/{}", g["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = sso.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn health_endpoints_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut sso = Ssogate::start(dir.path()).await;
    let r = sso.raw().get(sso.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let r = sso.raw().get(sso.url("/readyz")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    std::process::Command::new("kill").args(["-TERM", &sso.pid().to_string()]).status().unwrap();
    let status = sso.wait_exit(std::time::Duration::from_secs(10)).expect("did not stop on SIGTERM");
    assert!(status.success(), "{status}");
}

/// As a systemd `EnvironmentFile` or a compose file writes them: `1`/`0`, `yes`/`no`.
#[tokio::test]
async fn boolean_environment_variables_take_the_usual_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SSOGATE_DEV", "1"), ("SSOGATE_NO_MIGRATE", "0")].map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec();
    let sso = Ssogate::start_with(dir.path(), Options { dev: false, env, ..Default::default() }).await;
    sso.post("/organizations", json!({"name": "Acme", "slug": "acme"})).await;
    let (s, c) = sso.post("/organizations/acme/connections", conn_body("http://127.0.0.1:9/")).await;
    assert_eq!(s, StatusCode::CREATED, "SSOGATE_DEV=1 allows a loopback http IdP: {c}");
    drop(sso);
    let env = [("SSOGATE_DEV", "no")].map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec();
    let sso = Ssogate::start_with(dir.path(), Options { dev: false, env, ..Default::default() }).await;
    let got = sso.post("/organizations/acme/connections", conn_body("http://127.0.0.1:9/")).await;
    assert_error(&got, 422, "invalid_field", Some("discovery_url"));
    assert!(got.1["error"]["message"].as_str().unwrap().contains("--dev"), "the error names the flag: {}", got.1);
}
