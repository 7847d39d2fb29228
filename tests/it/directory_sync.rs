//! Directory sync over SCIM 2.0 against the real binary: the scim2-tester compliance
//! checks and the Okta and Entra ID request sequences replayed with scim2-client
//! (both PyPI, tests/scim), deprovisioning end to end through a real OP and a real
//! RP, group sync from directory groups, concurrency, and what one tenant's
//! directory can reach of another's.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::app_backend::AppBackend;
use crate::common::browser::Browser;
use crate::common::pg::PgDatabase;
use crate::common::sso_env::{Env, EnvOptions, APP_REDIRECT};
use crate::common::webhook_receiver::{Received, WebhookReceiver};
use crate::common::{eventually, Options, Ssogate};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A directory's SCIM endpoint and token, as its IdP is configured with them.
struct Scim {
    base: String,
    token: String,
    id: String,
    http: reqwest::Client,
}

impl Scim {
    /// A new directory of `org` for `connection_id`, made through the admin API.
    async fn create(sso: &Ssogate, org: &str, connection_id: &str) -> Scim {
        let (s, d) =
            sso.post(&format!("/organizations/{org}/directories"), json!({"name": "IdP directory", "connection_id": connection_id})).await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        Scim {
            base: d["scim_base_url"].as_str().unwrap().into(),
            token: d["bearer_token"].as_str().unwrap().into(),
            id: d["id"].as_str().unwrap().into(),
            http: reqwest::Client::new(),
        }
    }

    async fn call_with(&self, token: &str, method: Method, path: &str, body: Option<Value>, if_match: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        if status != StatusCode::NO_CONTENT {
            assert_eq!(resp.headers()["content-type"], "application/scim+json", "{status}");
        }
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(&self.token, method, path, body, None).await
    }

    async fn post_user(&self, user_name: &str, email: &str) -> Value {
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true,
                          "emails": [{"value": email, "type": "work", "primary": true}], "externalId": format!("ext-{user_name}")});
        let (s, body) = self.call(Method::POST, "/Users", Some(user)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body
    }

    async fn patch(&self, kind: &str, id: &str, ops: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, &format!("/{kind}/{id}"), Some(json!({"schemas": [PATCH_OP], "Operations": ops}))).await
    }
}

/// ssogate on a PostgreSQL database of its own (which needs an encryption key given).
fn on_postgres(pg: &PgDatabase) -> Options {
    let env = vec![("SSOGATE_ENCRYPTION_KEY".into(), "c3NvZ2F0ZS10ZXN0LXJlcGxpY2Eta2V5LTMyLWJ5dGU=".into())];
    Options { database_url: Some(pg.url.clone()), env, ..Default::default() }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one of tests/scim's Python programs (scim2-tester, scim2-client) against a directory.
fn python(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(repo().join("tests/scim/.venv/bin/python"))
        .arg(repo().join("tests/scim").join(script))
        .args(args)
        .output()
        .expect("tests/scim/.venv (scripts/test makes it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// ssogate with organizations `acme` and `globex`, each with a connection (whose IdP
/// these tests never reach) and a directory for it.
async fn two_tenants(opts: Options) -> (Ssogate, tempfile::TempDir, Scim, Scim) {
    let dir = tempfile::tempdir().unwrap();
    let sso = Ssogate::start_with(dir.path(), opts).await;
    let mut directories = vec![];
    for (org, domain) in [("acme", "acme.test"), ("globex", "globex.test")] {
        let (s, _) = sso.post("/organizations", json!({"name": org, "slug": org, "domains": [domain]})).await;
        assert_eq!(s, StatusCode::CREATED);
        let conn = json!({"name": "IdP", "client_id": "c", "client_secret": "s", "discovery_url": "http://127.0.0.1:9/",
                          "group_sync": {"enabled": true, "mapping": "Engineering -> builder"}});
        let (s, c) = sso.post(&format!("/organizations/{org}/connections"), conn).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        directories.push(Scim::create(&sso, org, c["id"].as_str().unwrap()).await);
    }
    let globex = directories.pop().unwrap();
    (sso, dir, directories.pop().unwrap(), globex)
}

#[tokio::test]
async fn scim2_tester_finds_nothing_wrong() {
    let (_sso, _dir, acme, _) = two_tenants(Options::default()).await;
    let (ok, out) = python("check.py", &[&acme.base, &acme.token]);
    assert!(ok, "scim2-tester reported errors:\n{out}");
    assert!(out.contains(" 0 failed"), "{out}");
}

#[tokio::test]
async fn okta_and_entra_id_sequences_work_as_they_send_them() {
    let (sso, _dir, acme, globex) = two_tenants(Options::default()).await;
    let (ok, out) = python("sequences.py", &["okta", &acme.base, &acme.token]);
    assert!(ok, "the Okta sequence failed:\n{out}");
    let okta: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    let (ok, out) = python("sequences.py", &["entra", &globex.base, &globex.token]);
    assert!(ok, "the Entra ID sequence failed:\n{out}");
    let entra: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();

    // The directory's users are the organizations' users; its groups went through
    // the connection's mapping (Engineering -> builder), and deactivation shows.
    let (_, ada) = sso.get(&format!("/users/{}", okta["ada"].as_str().unwrap())).await;
    assert_eq!(
        (ada["email"].as_str(), ada["last_name"].as_str(), ada["active"].as_bool()),
        (Some("ada@acme.test"), Some("King"), Some(true))
    );
    assert_eq!(ada["role"], "builder", "{ada}");
    assert_eq!(ada["groups"], json!(["builder"]));
    let (_, bob) = sso.get(&format!("/users/{}", okta["bob"].as_str().unwrap())).await;
    assert_eq!(bob["active"], false, "{bob}");
    assert_ne!(bob["role"], "builder", "bob was removed from Engineering: {bob}");
    let (_, grace) = sso.get(&format!("/users/{}", entra["grace"].as_str().unwrap())).await;
    assert_eq!((grace["email"].as_str(), grace["role"].as_str()), (Some("grace.hopper@acme.test"), Some("builder")), "{grace}");
    let (_, alan) = sso.get(&format!("/users/{}", entra["alan"].as_str().unwrap())).await;
    assert_eq!((alan["active"].as_bool(), alan["organization_id"].clone()), (Some(false), grace["organization_id"].clone()));

    // Seats count active users only: acme has ada (bob is deactivated).
    let (_, licence) = sso.get("/organizations/acme/entitlements").await;
    assert_eq!(licence["user_count"], 1, "{licence}");
    // Every change is in the audit log, with the directory as the actor.
    let (_, events) = sso.get(&format!("/organizations/acme/events?target_id={}", okta["bob"].as_str().unwrap())).await;
    let actions: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"directory.user_deactivated") && actions.contains(&"directory.user_created"), "{actions:?}");
    assert_eq!(events["data"][0]["actor"], format!("scim:{}", acme.id));
    // The admin API shows the directory with its counts and activity.
    let (_, d) = sso.get(&format!("/directories/{}", acme.id)).await;
    assert_eq!((d["user_count"].as_u64(), d["group_count"].as_u64()), (Some(2), Some(1)), "{d}");
    assert!(d["last_request_at"].is_string() && d.get("bearer_token").is_none(), "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("userName"), "the duplicate POST is the last error: {d}");
}

#[tokio::test]
async fn errors_use_the_scim_error_schema_and_write_nothing() {
    let (_sso, _dir, acme, _) = two_tenants(Options::default()).await;
    let ada = acme.post_user("ada", "ada@acme.test").await;
    let id = ada["id"].as_str().unwrap();
    let path = format!("/Users/{id}");
    let scim_error = |got: &(StatusCode, Value), status: u16, scim_type: Option<&str>| {
        assert_eq!(got.0.as_u16(), status, "{}", got.1);
        assert_eq!(got.1["schemas"], json!([SCIM_ERROR]));
        assert_eq!(got.1["status"], status.to_string());
        assert_eq!(got.1["scimType"].as_str(), scim_type, "{}", got.1);
        assert!(got.1["detail"].as_str().is_some_and(|d| !d.is_empty()));
    };
    scim_error(&acme.call(Method::GET, "/Users?filter=userName%20eq", None).await, 400, Some("invalidFilter"));
    scim_error(&acme.call(Method::GET, "/Users?count=many", None).await, 400, Some("invalidValue"));
    scim_error(&acme.call(Method::POST, "/Users", Some(json!({"userName": "ADA"}))).await, 409, Some("uniqueness"));
    scim_error(&acme.call(Method::POST, "/Users", Some(json!({"displayName": "no userName"}))).await, 400, Some("invalidValue"));
    scim_error(&acme.patch("Users", id, json!([{"op": "replace", "path": "id", "value": "mine"}])).await, 400, Some("mutability"));
    scim_error(
        &acme.patch("Users", id, json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])).await,
        400,
        Some("invalidPath"),
    );
    scim_error(&acme.patch("Users", id, json!([{"op": "remove"}])).await, 400, Some("noTarget"));
    let body = reqwest::Client::new().post(format!("{}/Users", acme.base)).bearer_auth(&acme.token).body("{not json").send().await.unwrap();
    assert_eq!(body.status(), 400);
    scim_error(&acme.call(Method::GET, "/Users/user_nobody", None).await, 404, None);
    scim_error(&acme.call(Method::GET, "/Nothing", None).await, 404, None);
    // A stale version is refused (RFC 7644 §3.14), and a current one accepted.
    let stale = acme
        .call_with(
            &acme.token,
            Method::PATCH,
            &path,
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "x"}]})),
            Some("W/\"7\""),
        )
        .await;
    scim_error(&stale, 412, None);
    let current = ada["meta"]["version"].as_str().unwrap().to_owned();
    let ok = acme
        .call_with(
            &acme.token,
            Method::PATCH,
            &path,
            Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "Countess"}]})),
            Some(&current),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    assert_ne!(ok.1["meta"]["version"].as_str(), Some(current.as_str()));
    // A request refused half-way through its operations leaves the resource as it was.
    let half = acme
        .patch(
            "Users",
            id,
            json!([{"op": "replace", "path": "title", "value": "changed"}, {"op": "replace", "path": "active", "value": "maybe"}]),
        )
        .await;
    scim_error(&half, 400, Some("invalidValue"));
    let bad_email = acme.call(Method::PUT, &path, Some(json!({"userName": "ada", "emails": [{"value": "not-an-address"}]}))).await;
    scim_error(&bad_email, 400, Some("invalidValue"));
    let (_, now) = acme.call(Method::GET, &path, None).await;
    assert_eq!((now["title"].as_str(), now["meta"]["version"].clone()), (Some("Countess"), ok.1["meta"]["version"].clone()));
}

/// A `userName` the directory has is the client's 409 whatever else the write
/// needs: a full organization does not turn the clash into a 403 (IdPs read a 409
/// on create as "exists, look it up", a 403 as a failed push).
#[tokio::test]
async fn a_name_clash_is_a_conflict_even_when_every_seat_is_taken() {
    let (sso, _dir, acme, _) = two_tenants(Options::default()).await;
    let ada = acme.post_user("ada", "ada@acme.test").await;
    let grace = acme.post_user("grace", "grace@acme.test").await;
    let off = acme.patch("Users", grace["id"].as_str().unwrap(), json!([{"op": "replace", "path": "active", "value": false}])).await;
    assert_eq!(off.0, StatusCode::OK, "{}", off.1);
    let (s, e) =
        sso.api(Method::PUT, "/organizations/acme/entitlements", Some(json!({"sso": true, "group_sync": true, "max_users": 1}))).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let conflict = |got: &(StatusCode, Value)| {
        assert_eq!((got.0.as_u16(), got.1["scimType"].as_str()), (409, Some("uniqueness")), "{}", got.1);
    };
    // A new user whose name differs only in case, with a new email.
    conflict(&acme.call(Method::POST, "/Users", Some(json!({"userName": "ADA", "emails": [{"value": "other@acme.test"}]}))).await);
    // Reactivating grace under ada's name.
    let path = format!("/Users/{}", grace["id"].as_str().unwrap());
    conflict(&acme.call(Method::PUT, &path, Some(json!({"userName": "Ada", "active": true}))).await);
    // Without the clash, the seat limit speaks.
    let full = acme.call(Method::PUT, &path, Some(json!({"userName": "grace", "active": true}))).await;
    assert_eq!(full.0.as_u16(), 403, "{}", full.1);
    assert!(ada["id"].is_string());
}

#[tokio::test]
async fn a_directory_reaches_nothing_of_another_tenant() {
    let (sso, _dir, acme, globex) = two_tenants(Options::default()).await;
    let victim = globex.post_user("victim", "victim@globex.test").await;
    let victim_id = victim["id"].as_str().unwrap();

    // Globex's resources are not found through acme's directory, even by id.
    assert_eq!(acme.call(Method::GET, &format!("/Users/{victim_id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(acme.patch("Users", victim_id, json!([{"op": "replace", "path": "active", "value": false}])).await.0, StatusCode::NOT_FOUND);
    assert_eq!(acme.call(Method::DELETE, &format!("/Users/{victim_id}"), None).await.0, StatusCode::NOT_FOUND);
    let (_, listed) = acme.call(Method::GET, &format!("/Users?filter=id%20eq%20%22{victim_id}%22"), None).await;
    assert_eq!(listed["totalResults"], 0);
    // Naming globex's user as a member of an acme group gives them nothing: the
    // value is kept as sent, but only acme's own users are synced.
    let (s, g) = acme.call(Method::POST, "/Groups", Some(json!({"displayName": "Engineering", "members": [{"value": victim_id}]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let (_, victim_now) = sso.get(&format!("/users/{victim_id}")).await;
    assert_eq!(victim_now["role"], "end-user", "{victim_now}");
    assert_eq!(victim_now["groups"], json!([]), "{victim_now}");
    // An acme user with a globex address is acme's own new user, not globex's.
    let twin = acme.post_user("victim-twin", "victim@globex.test").await;
    assert_ne!(twin["id"], victim["id"]);
    let (_, twin_user) = sso.get(&format!("/users/{}", twin["id"].as_str().unwrap())).await;
    assert_ne!(twin_user["organization_id"], victim_now["organization_id"]);

    // Each directory's token opens only its own directory.
    let wrong = acme.call_with(&globex.token, Method::GET, "/Users", None, None).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.1["schemas"], json!([SCIM_ERROR]));

    // A rotated token replaces the old one at once; the audit log says who did it.
    let (s, rotated) = sso.post(&format!("/directories/{}/rotate-token", globex.id), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(rotated["bearer_token"].as_str(), Some(globex.token.as_str()));
    let (_, events) = sso.get("/organizations/globex/events?action=directory.token_rotated").await;
    assert_eq!(events["data"][0]["actor"], "admin_token");
    assert!(!sso.log().contains(&globex.token) && !sso.log().contains(rotated["bearer_token"].as_str().unwrap()), "no token in the log");
}

#[tokio::test]
async fn wrong_tokens_are_refused_and_guessing_is_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    // The admin API's allowance, which wrong SCIM tokens share (counted apart).
    let sso =
        Ssogate::start_with(dir.path(), Options { env: vec![("SSOGATE_RATE_LIMIT_ADMIN".into(), "5".into())], ..Default::default() }).await;
    sso.post("/organizations", json!({"name": "Acme", "slug": "acme"})).await;
    let (_, c) = sso
        .post(
            "/organizations/acme/connections",
            json!({"name": "IdP", "client_id": "c", "client_secret": "s", "discovery_url": "http://127.0.0.1:9/"}),
        )
        .await;
    let acme = Scim::create(&sso, "acme", c["id"].as_str().unwrap()).await;
    let refused = acme.call_with("scim_guess", Method::GET, "/Users", None, None).await;
    assert_eq!(refused.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.1["schemas"], json!([SCIM_ERROR]));
    // A path that is no directory id is refused unlooked-up and uncounted.
    let junk = Scim { base: acme.base.replace(&acme.id, &"x".repeat(3000)), ..acme };
    assert_eq!(junk.call(Method::GET, "/Users", None).await.0, StatusCode::UNAUTHORIZED);
    let acme = Scim { base: junk.base.replace(&"x".repeat(3000), &junk.id), ..junk };
    let unknown = Scim { base: acme.base.replace(&acme.id, "dir_01m8xp4r457qahw5nbavy1xjr1"), ..acme };
    assert_eq!(unknown.call(Method::GET, "/Users", None).await.0, StatusCode::UNAUTHORIZED, "an unknown directory looks the same");
    let acme = Scim { base: unknown.base.replace("dir_01m8xp4r457qahw5nbavy1xjr1", &unknown.id), ..unknown };
    assert_eq!(acme.call(Method::GET, "/Users", None).await.0, StatusCode::OK, "right tokens are not counted");
    let mut statuses = vec![];
    for _ in 0..8 {
        statuses.push(acme.call_with("scim_guess", Method::GET, "/Users", None, None).await.0.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // The right token still works from that address: IdPs push from shared
    // addresses, and one tenant's stale token must not stop another's sync.
    assert_eq!(acme.call(Method::GET, "/Users", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn what_a_directory_gave_it_takes_back_at_once() {
    let (sso, _dir, acme, _) = two_tenants(Options::default()).await;
    // frank was created by an admin before the directory existed; the directory links him.
    let (s, frank) = sso.post("/organizations/acme/users", json!({"email": "frank@acme.test", "username": "frank"})).await;
    assert_eq!(s, StatusCode::CREATED, "{frank}");
    let frank_id = frank["id"].as_str().unwrap();
    let linked = acme.post_user("frank", "frank@acme.test").await;
    assert_eq!(linked["id"], frank_id);
    let role = || async { sso.get(&format!("/users/{frank_id}")).await.1["role"].as_str().unwrap().to_owned() };
    let eng = json!({"displayName": "Engineering", "members": [{"value": frank_id}]});
    let (_, group) = acme.call(Method::POST, "/Groups", Some(eng.clone())).await;
    assert_eq!(role().await, "builder", "Engineering -> builder");
    // Deleting the group takes the role now, not at some later sync.
    assert_eq!(acme.call(Method::DELETE, &format!("/Groups/{}", group["id"].as_str().unwrap()), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(role().await, "end-user");
    // So does renaming it.
    let (_, group) = acme.call(Method::POST, "/Groups", Some(eng)).await;
    assert_eq!(role().await, "builder");
    acme.patch("Groups", group["id"].as_str().unwrap(), json!([{"op": "replace", "path": "displayName", "value": "Eng"}])).await;
    assert_eq!(role().await, "end-user");
    acme.patch("Groups", group["id"].as_str().unwrap(), json!([{"op": "replace", "path": "displayName", "value": "Engineering"}])).await;
    assert_eq!(role().await, "builder");
    // Deleting the user takes what the directory gave, so linking them again gives nothing back.
    assert_eq!(acme.call(Method::DELETE, &format!("/Users/{frank_id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(role().await, "end-user");
    acme.post_user("frank", "frank@acme.test").await;
    let (_, frank) = sso.get(&format!("/users/{frank_id}")).await;
    assert_eq!((frank["role"].as_str(), frank["active"].as_bool()), (Some("end-user"), Some(true)), "{frank}");
    // Deleting the directory takes back what its groups gave.
    let add_frank = json!([{"op": "add", "path": "members", "value": [{"value": frank_id}]}]);
    acme.patch("Groups", group["id"].as_str().unwrap(), add_frank).await;
    assert_eq!(role().await, "builder");
    assert_eq!(sso.delete(&format!("/directories/{}", acme.id)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(role().await, "end-user");
}

#[tokio::test]
async fn a_directory_cannot_adopt_a_user_another_idp_vouches_for() {
    let (sso, _dir, acme, _) = two_tenants(Options::default()).await;
    // A second IdP of acme, matching by subject: its directory's users carry their subject.
    let conn =
        json!({"name": "Other IdP", "client_id": "c2", "client_secret": "s", "discovery_url": "http://127.0.0.1:9/", "user_match": "sub"});
    let (_, other) = sso.post("/organizations/acme/connections", conn).await;
    let other_dir = Scim::create(&sso, "acme", other["id"].as_str().unwrap()).await;
    let boss = other_dir.post_user("boss", "boss@acme.test").await;
    let (_, before) = sso.get(&format!("/users/{}", boss["id"].as_str().unwrap())).await;
    assert_eq!(before["idp_sub"], "ext-boss");
    // The first IdP's directory pushes someone with boss's address: not linked to boss.
    let user = json!({"userName": "evil", "emails": [{"value": "boss@acme.test", "primary": true}]});
    let (s, body) = acme.call(Method::POST, "/Users", Some(user)).await;
    assert_eq!((s, body["scimType"].as_str()), (StatusCode::CONFLICT, Some("uniqueness")), "{body}");
    let (_, after) = sso.get(&format!("/users/{}", boss["id"].as_str().unwrap())).await;
    assert_eq!((after["username"].as_str(), after["active"].as_bool()), (Some("boss"), Some(true)), "{after}");
    // Nor can it deactivate them: boss is not its user.
    assert_eq!(acme.call(Method::DELETE, &format!("/Users/{}", boss["id"].as_str().unwrap()), None).await.0, StatusCode::NOT_FOUND);
    // An admin can deactivate and reactivate anyone.
    let (s, off) = sso.patch(&format!("/users/{}", boss["id"].as_str().unwrap()), json!({"active": false})).await;
    assert_eq!((s, off["active"].as_bool()), (StatusCode::OK, Some(false)));
    let (s, on) = sso.patch(&format!("/users/{}", boss["id"].as_str().unwrap()), json!({"active": true})).await;
    assert_eq!((s, on["active"].as_bool()), (StatusCode::OK, Some(true)));
}

#[tokio::test]
async fn oversized_input_is_refused_before_it_costs() {
    let (_sso, _dir, acme, _) = two_tenants(Options::default()).await;
    let u = acme.post_user("u", "u@acme.test").await;
    // More values than a user's list may hold (checked in linear time, core::scim::resource).
    let emails: Vec<Value> = (0..500).map(|i| json!({"value": format!("e{i}@acme.test")})).collect();
    let (s, body) = acme.patch("Users", u["id"].as_str().unwrap(), json!([{"op": "add", "path": "emails", "value": emails}])).await;
    assert_eq!((s, body["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidValue")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("emails"), "{body}");
}

/// Forty IdP requests adding one member each to the same group, all at once.
async fn concurrent_member_adds(opts: Options) {
    let (_sso, _dir, acme, _) = two_tenants(opts).await;
    let mut ids = vec![];
    for i in 0..40 {
        ids.push(acme.post_user(&format!("u{i}"), &format!("u{i}@acme.test")).await["id"].as_str().unwrap().to_owned());
    }
    let (_, g) = acme.call(Method::POST, "/Groups", Some(json!({"displayName": "Engineering"}))).await;
    let gid = g["id"].as_str().unwrap().to_owned();
    let adds = ids.iter().map(|id| acme.patch("Groups", &gid, json!([{"op": "add", "path": "members", "value": [{"value": id}]}])));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(adds).await.into_iter().map(|(s, _)| s).collect();
    assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT), "{statuses:?}");
    let (_, group) = acme.call(Method::GET, &format!("/Groups/{gid}"), None).await;
    let mut members: Vec<String> = group["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect();
    members.sort();
    ids.sort();
    assert_eq!(members, ids, "no member lost");
    assert_eq!(group["meta"]["version"], "W/\"41\"", "each PATCH one version");
}

#[tokio::test]
async fn concurrent_patches_of_one_group_lose_no_member_on_sqlite() {
    concurrent_member_adds(Options::default()).await;
}

#[tokio::test]
async fn concurrent_patches_of_one_group_lose_no_member_on_postgres() {
    let pg = PgDatabase::create().await;
    concurrent_member_adds(on_postgres(&pg)).await;
}

/// SQLite's writes queue at one writer that commits them in groups: sign-ins, whose
/// single-statement writes (a login state's use, a code's redemption, a session's
/// activity) run outside a transaction, take their turn in the same queue during an
/// IdP's burst, and the burst loses nothing.
#[tokio::test]
async fn sign_ins_go_on_during_a_scim_burst_on_sqlite() {
    use futures_util::stream::{self, StreamExt};
    let env = Env::start(EnvOptions::default()).await;
    let acme = Scim::create(&env.sso, "acme", &env.connection_id).await;
    let burst = stream::iter(0..240)
        .map(|i| {
            let acme = &acme;
            async move { acme.post_user(&format!("burst{i}"), &format!("burst{i}@acme.test")).await }
        })
        .buffer_unordered(8)
        .count();
    let sign_ins = async {
        let mut signed_in = vec![];
        for _ in 0..4 {
            signed_in.push(env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.is_ok());
        }
        signed_in
    };
    let (created, signed_in) = tokio::join!(burst, sign_ins);
    assert_eq!(created, 240);
    assert_eq!(signed_in, vec![true; 4], "every sign-in during the burst succeeds");
    let (_, listed) = acme.call(Method::GET, "/Users?count=1", None).await;
    assert_eq!(listed["totalResults"], 240, "{listed}");
}

/// One person, one user; deactivation ends everything at once, on every replica,
/// and refuses the next sign-in; reactivation restores access.
async fn deprovisioning(replicas: usize) {
    let backend = AppBackend::start().await;
    let app = json!({"backchannel_logout_uri": backend.backchannel_logout_uri});
    let env = Env::start(EnvOptions { app, replicas, ..Default::default() }).await;
    let signed_in = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    let user_id = signed_in["id_token_claims"]["sub"].as_str().unwrap().to_owned();
    assert!(env.app_userinfo(&signed_in).is_ok());

    let receiver = WebhookReceiver::start().await;
    let (s, hook) =
        env.sso.post(&format!("/applications/{}/webhooks", env.app["id"].as_str().unwrap()), json!({"url": receiver.url})).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let acme = Scim::create(&env.sso, "acme", &env.connection_id).await;
    // The IdP pushes alice: the connection matches by verified email, so the SCIM
    // user is the user who signed in, not a second one.
    let alice = acme.post_user("alice.l", "alice@acme.test").await;
    assert_eq!(alice["id"], user_id.as_str());
    let (_, users) = env.sso.get("/organizations/acme/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1, "{users}");

    let (s, off) = acme.patch("Users", &user_id, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!((s, off["active"].as_bool()), (StatusCode::OK, Some(false)), "{off}");
    // At once, at every replica: the application's token is dead...
    let (client_id, secret) = env.app_credentials();
    let access_token = signed_in["access_token"].as_str().unwrap();
    for replica in std::iter::once(&env.sso).chain(&env.other_replicas) {
        let (status, _) = env.sso_userinfo_at(replica, &client_id, &secret, access_token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "at {}", replica.base);
    }
    assert!(env.app_userinfo(&signed_in).is_err());
    assert!(env.sessions_of(&user_id).await.is_empty());
    // ...the application heard it over the back channel...
    let tokens = backend.logout_tokens(1, Duration::from_secs(10)).await;
    assert_eq!(tokens.len(), 1);
    let claims = env.rp.run("verify_logout_token", json!({"logout_token": tokens[0]})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sub"], user_id.as_str());
    // ...and by webhook, signed with its secret, of the deactivation and the ended session...
    let secret = hook["secret"].as_str().unwrap();
    let heard = receiver.received_until(Duration::from_secs(15), |r| event_types(r).iter().any(|t| t == "session.ended")).await;
    let types = event_types(&heard);
    assert!(types.contains(&"dsync.user.deactivated".to_owned()) && types.contains(&"session.ended".to_owned()), "{types:?}");
    assert!(heard.iter().all(|r| signed_by(secret, r)));
    // ...and the IdP, which still lets alice in, cannot sign her in again.
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "{landing:?}");
    assert!(landing.param("error_description").unwrap().contains("deactivated"));

    let (s, _) = acme.patch("Users", &user_id, json!([{"op": "replace", "value": {"active": true}}])).await;
    assert_eq!(s, StatusCode::OK);
    let again = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "alice"})).await.0.unwrap();
    assert_eq!(again["id_token_claims"]["sub"], user_id.as_str());

    // DELETE deprovisions too, and the user stays out rather than coming back as new.
    assert_eq!(acme.call(Method::DELETE, &format!("/Users/{user_id}"), None).await.0, StatusCode::NO_CONTENT);
    assert!(env.app_userinfo(&again).is_err());
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    let (_, users) = env.sso.get("/organizations/acme/users").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1, "{users}");
}

#[tokio::test]
async fn deprovisioning_ends_sessions_and_sign_in_at_once() {
    deprovisioning(1).await;
}

// The load balancer runs in this process: its runtime must not wait on the blocking RP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deprovisioning_reaches_every_replica() {
    deprovisioning(2).await;
}

#[tokio::test]
async fn existing_users_admits_only_people_the_directory_pushed() {
    let env = Env::start(EnvOptions { provisioning: "existing_users", ..Default::default() }).await;
    let acme = Scim::create(&env.sso, "acme", &env.connection_id).await;
    acme.post_user("bob", "bob@acme.test").await;
    let bob = env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "bob"})).await.0;
    assert!(bob.is_ok(), "{bob:?}");
    let started = env.rp.start(json!({"organization": "acme", "login_hint": "alice"}));
    let (landing, _) = Browser::new().follow(&started.url, APP_REDIRECT).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"), "alice was never pushed");
}

#[tokio::test]
async fn the_organization_chooses_which_source_sets_groups() {
    let env = Env::start(EnvOptions { scopes: Some(json!(["openid", "email", "profile", "groups"])), ..Default::default() }).await;
    let (s, _) = env
        .sso
        .patch(
            &format!("/connections/{}", env.connection_id),
            json!({"group_sync": {"enabled": true, "mapping": "Engineering -> builder"}, "trust_unverified_email": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let acme = Scim::create(&env.sso, "acme", &env.connection_id).await;
    // dana's groups claim says Engineering and admin; her directory says Sales only.
    let dana = acme.post_user("dana", "dana@acme.test").await;
    let dana_id = dana["id"].as_str().unwrap();
    let (s, _) = acme.call(Method::POST, "/Groups", Some(json!({"displayName": "Sales", "members": [{"value": dana_id}]}))).await;
    assert_eq!(s, StatusCode::CREATED);
    env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dana"})).await.0.unwrap();
    let (_, user) = env.sso.get(&format!("/users/{dana_id}")).await;
    assert_eq!(user["role"], "end-user", "by default the directory wins over the claim: {user}");
    // With `sign_in`, the groups claim at sign-in sets them.
    let (s, _) = env.sso.patch("/organizations/acme", json!({"groups_source": "sign_in"})).await;
    assert_eq!(s, StatusCode::OK);
    env.login(&Browser::new(), json!({"organization": "acme", "login_hint": "dana"})).await.0.unwrap();
    let (_, user) = env.sso.get(&format!("/users/{dana_id}")).await;
    assert_eq!((user["role"].as_str(), user["synced_groups"].clone()), (Some("admin"), json!(["admin", "builder"])), "{user}");
}

/// An application subscribed to every event, with its webhook's signing secret.
async fn subscribed_application(sso: &Ssogate, receiver: &WebhookReceiver) -> (Value, String) {
    let (s, app) = sso.post("/applications", json!({"name": "HR app", "redirect_uris": ["https://hr.example.test/cb"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    let (s, hook) = sso.post(&format!("/applications/{}/webhooks", app["id"].as_str().unwrap()), json!({"url": receiver.url})).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    (app, hook["secret"].as_str().unwrap().to_owned())
}

/// Checks a delivery's `t=…, v1=…` signature with HMAC-SHA256 computed here.
fn signed_by(secret: &str, r: &Received) -> bool {
    let Some((t, v1)) = r.signature.split_once(", ") else { return false };
    let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else { return false };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag: Vec<u8> = (0..v1.len()).step_by(2).filter_map(|i| u8::from_str_radix(v1.get(i..i + 2)?, 16).ok()).collect();
    aws_lc_rs::hmac::verify(&key, format!("{t}.{}", r.body).as_bytes(), &tag).is_ok()
}

fn event_types(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["event"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn applications_hear_of_directory_changes_by_signed_webhook_and_by_polling() {
    let receiver = WebhookReceiver::start().await;
    let (sso, _dir, acme, _) = two_tenants(Options::default()).await;
    let (app, secret) = subscribed_application(&sso, &receiver).await;
    let ada = acme.post_user("ada", "ada@acme.test").await;
    let ada_id = ada["id"].as_str().unwrap();
    let (_, group) = acme.call(Method::POST, "/Groups", Some(json!({"displayName": "Engineering", "members": [{"value": ada_id}]}))).await;
    acme.patch("Groups", group["id"].as_str().unwrap(), json!([{"op": "remove", "path": "members"}])).await;
    acme.patch("Users", ada_id, json!([{"op": "replace", "path": "active", "value": false}])).await;
    acme.call(Method::DELETE, &format!("/Users/{ada_id}"), None).await;
    let want = [
        "dsync.user.created",
        "dsync.group.created",
        "dsync.group.user_added",
        "dsync.group.user_removed",
        "dsync.user.deactivated",
        "dsync.user.deleted",
    ];

    let received = receiver.received_until(Duration::from_secs(15), |r| r.len() >= want.len()).await;
    assert_eq!(event_types(&received), want, "every change, in order");
    assert!(received.iter().all(|r| signed_by(&secret, r)), "each body is signed with the endpoint's secret");
    assert!(!received.iter().any(|r| signed_by("whsec_someone-else", r)));
    let first: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!((first["data"]["id"].as_str(), first["data"]["state"].as_str()), (Some(ada_id), Some("active")), "{first}");
    assert_eq!(first["data"]["directory_id"], acme.id.as_str());
    let added: Value = serde_json::from_str(&received[2].body).unwrap();
    assert_eq!((added["data"]["user"]["id"].as_str(), added["data"]["group"]["name"].as_str()), (Some(ada_id), Some("Engineering")));

    // The delivery log shows each attempt (recorded once the answer is in).
    let deliveries = format!("/applications/{}/webhook-deliveries", app["id"].as_str().unwrap());
    eventually(Duration::from_secs(10), "every delivery on record", || async {
        let (_, log) = sso.get(&deliveries).await;
        let log = log["data"].as_array().unwrap().clone();
        (log.len() == want.len() && log.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1 && d["last_status"] == 200))
            .then_some(())
    })
    .await;

    // The same events, polled with the application's own credentials, oldest first.
    let (client_id, client_secret) = (app["client_id"].as_str().unwrap(), app["client_secret"].as_str().unwrap());
    let poll = |query: String| {
        let url = sso.url(&format!("/app/v1/events{query}"));
        async move { reqwest::Client::new().get(url).basic_auth(client_id, Some(client_secret)).send().await.unwrap() }
    };
    let page: Value = poll("?limit=4".into()).await.json().await.unwrap();
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], first["id"].as_str().unwrap(), "webhook and poll carry the same event ids");
    let rest: Value = poll(format!("?after={}", page["list_metadata"]["after"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    let only: Value = poll("?events=dsync.user.deleted".into()).await.json().await.unwrap();
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let refused = reqwest::Client::new().get(sso.url("/app/v1/events")).basic_auth(client_id, Some("wrong")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(!sso.log().contains(&secret), "the signing secret is never logged");
}

#[tokio::test]
async fn a_slow_application_delays_only_its_own_webhooks() {
    let (fast, slow) = (WebhookReceiver::start().await, WebhookReceiver::start().await);
    let (sso, _dir, acme, _) = two_tenants(Options::default()).await;
    subscribed_application(&sso, &slow).await;
    subscribed_application(&sso, &fast).await;
    slow.answer_after(20);
    for i in 0..30 {
        acme.post_user(&format!("u{i}"), &format!("u{i}@acme.test")).await;
    }
    let got = fast.received_until(Duration::from_secs(10), |r| r.len() >= 30).await;
    assert_eq!(got.len(), 30, "the fast application gets every event while the slow one holds its own");
    assert_eq!(slow.received_until(Duration::from_millis(100), |_| false).await.len(), 1, "one attempt at a time per endpoint");
}

#[tokio::test]
async fn a_restart_while_deliveries_fail_loses_no_event_on_sqlite() {
    restart_while_deliveries_fail(Options::default()).await;
}

#[tokio::test]
async fn a_restart_while_deliveries_fail_loses_no_event_on_postgres() {
    let pg = PgDatabase::create().await;
    restart_while_deliveries_fail(on_postgres(&pg)).await;
}

async fn restart_while_deliveries_fail(opts: Options) {
    let receiver = WebhookReceiver::start().await;
    let (sso, _dir, acme, _) = two_tenants(opts).await;
    let (app, secret) = subscribed_application(&sso, &receiver).await;
    receiver.answer_with(503);
    for i in 0..3 {
        acme.post_user(&format!("u{i}"), &format!("u{i}@acme.test")).await;
    }
    // Each delivery tried once and refused (the attempt is recorded after the answer).
    let deliveries = format!("/applications/{}/webhook-deliveries", app["id"].as_str().unwrap());
    eventually(Duration::from_secs(10), "three failed attempts on record", || async {
        let (_, log) = sso.get(&deliveries).await;
        let rows = log["data"].as_array().unwrap().clone();
        (rows.len() == 3 && rows.iter().all(|d| d["status"] == "pending" && d["last_status"] == 503 && d["attempts"] == 1)).then_some(())
    })
    .await;
    // ssogate dies (as a crash would), then the application recovers.
    let sso = sso.crash_and_restart().await;
    receiver.answer_with(200);
    let received =
        receiver.received_until(Duration::from_secs(40), |r| r.iter().filter(|x| x.signature.contains("v1=")).count() >= 6).await;
    let mut delivered: Vec<String> =
        received.iter().map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["id"].as_str().unwrap().to_owned()).collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 3, "every event, at least once: {received:?}");
    assert!(received.iter().all(|r| signed_by(&secret, r)));
    eventually(Duration::from_secs(10), "each delivered on its second attempt", || async {
        let (_, log) = sso.get(&deliveries).await;
        log["data"].as_array().unwrap().iter().all(|d| d["status"] == "delivered" && d["attempts"] == 2).then_some(())
    })
    .await;
}
