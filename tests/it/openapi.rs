//! The admin API against its OpenAPI description (`docs/openapi.yaml`): every route
//! is described, and schemathesis (from PyPI) fuzzes the running service for 5xx,
//! undocumented statuses, answers that break their schema, and requests the
//! description refuses but the API accepts.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::browser::Browser;
use common::sso_env::{Env, EnvOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `(METHOD, /path)` of every operation the description lists.
fn described_operations() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo().join("docs/openapi.yaml")).unwrap();
    let paths = text.split("\ncomponents:").next().unwrap();
    let mut ops = BTreeSet::new();
    let mut path = None;
    for line in paths.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if let Some(m) = ["get", "post", "put", "patch", "delete"].iter().find(|m| line == format!("    {m}:")) {
            ops.insert((m.to_uppercase(), path.clone().expect("a method under a path")));
        }
    }
    ops
}

/// `(METHOD, /path)` of every route the admin router declares
/// (`.route("/path", get(a).patch(b))` in src/http/admin/*.rs).
fn routed_operations() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("src/http/admin")).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for route in source.split(".route(\"").skip(1) {
            let (path, rest) = route.split_once('"').unwrap();
            let handlers = &rest[..rest.find("))").map_or(rest.len(), |i| i + 1)];
            for method in ["get", "post", "put", "patch", "delete"] {
                if handlers.contains(&format!(", {method}(")) || handlers.contains(&format!(".{method}(")) {
                    ops.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    ops
}

#[test]
fn every_admin_route_is_described_and_nothing_else() {
    let described = described_operations();
    let routed = routed_operations();
    assert!(routed.len() > 30, "the route scan found too little: {routed:?}");
    let undocumented: Vec<_> = routed.difference(&described).collect();
    let phantom: Vec<_> = described.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/openapi.yaml: {undocumented:?}");
    assert!(phantom.is_empty(), "docs/openapi.yaml describes routes that do not exist: {phantom:?}");
}

#[tokio::test]
async fn the_description_is_served_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let sso = common::Ssogate::start(dir.path()).await;
    let resp = sso.raw().get(sso.url("/api/v1/openapi.yaml")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    assert_eq!(resp.text().await.unwrap(), std::fs::read_to_string(repo().join("docs/openapi.yaml")).unwrap());
}

/// Installed by scripts/test from tests/api/requirements.txt.
fn schemathesis() -> PathBuf {
    let path =
        std::env::var_os("SSOGATE_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| repo().join("tests/api/.venv/bin/schemathesis"));
    assert!(path.exists(), "schemathesis not found at {}; run scripts/test, which installs it", path.display());
    path
}

async fn created(sso: &common::Ssogate, path: &str, body: Value) -> Value {
    let (s, v) = sso.post(path, body).await;
    assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
    v
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn schemathesis_finds_nothing() {
    let st = schemathesis();
    // A signed-in user gives the session operations something to show and end; group
    // sync gives them groups and leaves a sync job behind.
    let env = Env::start(EnvOptions::default()).await;
    let sso = &env.sso;
    // By id: the run renames slugs.
    let (_, org) = sso.get("/organizations/acme").await;
    let (s, c) = sso
        .patch(
            &format!("/connections/{}", env.connection_id),
            json!({"group_sync": {"enabled": true, "mapping": "Engineering -> builder"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dana"})).await.0.unwrap();
    let user = signed_in["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    let session = env.sessions_of(&user).await[0]["id"].as_str().unwrap().to_owned();
    let group = created(sso, "/organizations/acme/groups", json!({"name": "Support", "permissions": ["tickets:read"]})).await;
    let (s, jobs) = sso.get("/organizations/acme/sync-jobs").await;
    assert_eq!(s, StatusCode::OK);
    let sync_job = id(&jobs["data"][0]);

    let doomed_org = created(sso, "/organizations", json!({"name": "Doomed", "domains": ["doomed.test"]})).await;
    let doomed_connection = created(
        sso,
        "/organizations/acme/connections",
        json!({"name": "Doomed", "client_id": "c", "client_secret": "s", "discovery_url": env.idp.issuer}),
    )
    .await;
    let doomed_application = created(sso, "/applications", json!({"name": "Doomed", "redirect_uris": ["https://doomed.test/cb"]})).await;
    let doomed_user = created(sso, "/organizations/acme/users", json!({"email": "doomed@acme.test"})).await;
    let doomed_group = created(sso, "/organizations/acme/groups", json!({"name": "Doomed"})).await;

    let report = tempfile::tempdir().unwrap();
    let out = Command::new(st)
        .current_dir(repo().join("tests/api"))
        .args(["run", "../../docs/openapi.yaml", "--url"])
        .arg(sso.url("/api/v1"))
        .args(["--header", &format!("Authorization: Bearer {}", common::ADMIN_TOKEN), "--no-color"])
        .args(["--report", "junit", "--report-dir"])
        .arg(report.path())
        .envs([
            ("SSOGATE_ST_ORG", id(&org)),
            ("SSOGATE_ST_SESSION", session),
            ("SSOGATE_ST_CONNECTION", env.connection_id.clone()),
            ("SSOGATE_ST_APPLICATION", id(&env.app)),
            ("SSOGATE_ST_USER", user),
            ("SSOGATE_ST_GROUP", id(&group)),
            ("SSOGATE_ST_SYNC_JOB", sync_job),
            ("SSOGATE_ST_DOOMED_ORG", id(&doomed_org)),
            ("SSOGATE_ST_DOOMED_CONNECTION", id(&doomed_connection)),
            ("SSOGATE_ST_DOOMED_APPLICATION", id(&doomed_application)),
            ("SSOGATE_ST_DOOMED_USER", id(&doomed_user)),
            ("SSOGATE_ST_DOOMED_GROUP", id(&doomed_group)),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems (above); ssogate's log:\n{}", sso.log());
    // Guard against a run that tested nothing (a broken config or description).
    let summary = stdout.rsplit("Test cases:").next().unwrap_or_default();
    let generated: u64 = summary.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(generated > 1000, "schemathesis generated only {generated} test cases");
    // Ending one session is the only operation whose object cannot outlive its first call.
    let kept_answering_404 = missing_test_data(&stdout);
    assert!(
        kept_answering_404.iter().all(|op| op == "DELETE /users/{id}/sessions/{session_id}"),
        "operations kept answering 404, so the fixtures above did not reach them: {kept_answering_404:?}"
    );
}

/// The operations schemathesis's "Missing test data" warning lists.
fn missing_test_data(output: &str) -> Vec<String> {
    let Some((_, warning)) = output.split_once("Missing test data:") else { return vec![] };
    warning.lines().skip(1).skip_while(|l| l.trim().is_empty()).map_while(|l| l.trim().strip_prefix("- ")).map(str::to_owned).collect()
}
