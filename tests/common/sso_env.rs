//! The usual scene of a brokered-login test: ssogate, the npm OP with ssogate
//! registered as its client, an organization `acme` (domain acme.test) with one
//! connection to that OP, and one application whose browser-side is openid-client.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::browser::Browser;
use super::idp::TestIdp;
use super::rp::RelyingParty;
use super::{free_port, Options, Ssogate};

pub const APP_REDIRECT: &str = "https://app.example.test/callback";
pub const IDP_SECRET: &str = "ssogate-at-the-idp-secret";

pub struct Env {
    pub idp: TestIdp,
    pub sso: Ssogate,
    pub rp: RelyingParty,
    pub connection_id: String,
    pub app: Value,
    _dir: tempfile::TempDir,
}

pub struct EnvOptions<'a> {
    pub provisioning: &'a str,
    /// The application's settings beyond name and redirect URIs.
    pub app: Value,
    /// More OP configuration (`ttl`, ...), merged into tests/idp/op.mjs's.
    pub op: Value,
    /// More `ssogate serve` flags.
    pub sso_args: Vec<String>,
    /// Scopes ssogate asks the OP for; default: the connection's default.
    pub scopes: Option<Value>,
}

impl Default for EnvOptions<'_> {
    fn default() -> Self {
        EnvOptions { provisioning: "jit", app: json!({}), op: json!({}), sso_args: vec![], scopes: None }
    }
}

pub fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.test", "email_verified": true, "given_name": "Alice", "family_name": "Liddell",
                  "preferred_username": "alice.l", "department": "R&D"},
        "bob": {"email": "bob@acme.test", "email_verified": true, "given_name": "Bob"},
        // Groups in the three shapes IdPs send, one account each.
        "dana": {"email": "dana@acme.test", "groups": ["Engineering", "admin"]},
        "erin": {"email": "erin@acme.test", "groups": "Sales Team"},
        "fay": {"email": "fay@acme.test", "entra_groups": [{"id": "g-123", "displayName": "Marketing (EU)"}]},
        "gus": {"email": "gus@acme.test", "realm_access": {"roles": ["builder"]}},
    })
}

impl Env {
    /// ssogate comes first (the OP must know its addresses, including the
    /// connection's back-channel logout URI), then the OP on a port chosen beforehand.
    pub async fn start(o: EnvOptions<'_>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let sso = Ssogate::start_with(dir.path(), Options { extra_args: o.sso_args, ..Default::default() }).await;
        // Chosen while ssogate holds its own port, so the two cannot collide.
        let op_port = free_port();
        let (s, _) = sso.post("/organizations", json!({"name": "Acme", "slug": "acme", "domains": ["acme.test"]})).await;
        assert_eq!(s, StatusCode::CREATED);
        let mut connection = json!({"name": "Acme IdP", "client_id": "ssogate", "client_secret": IDP_SECRET,
                                    "discovery_url": format!("http://127.0.0.1:{op_port}"), "provisioning": o.provisioning});
        if let Some(scopes) = o.scopes {
            connection["scopes"] = scopes;
        }
        let (s, conn) = sso.post("/organizations/acme/connections", connection).await;
        assert_eq!(s, StatusCode::CREATED, "{conn}");
        let mut op = json!({
            "port": op_port,
            "clients": [{
                "client_id": "ssogate", "client_secret": IDP_SECRET,
                "redirect_uris": [conn["redirect_uri"]],
                "post_logout_redirect_uris": [conn["post_logout_redirect_uri"]],
                "backchannel_logout_uri": conn["backchannel_logout_uri"],
                "grant_types": ["authorization_code", "refresh_token"],
            }],
            "accounts": accounts(),
        });
        merge(&mut op, o.op);
        let idp = TestIdp::start(op);
        let mut app = json!({"name": "App", "redirect_uris": [APP_REDIRECT]});
        merge(&mut app, o.app);
        let (s, app) = sso.post("/applications", app).await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let rp = RelyingParty {
            issuer: sso.base.clone(),
            client_id: app["client_id"].as_str().unwrap().into(),
            client_secret: Some(app["client_secret"].as_str().unwrap().into()),
            redirect_uri: APP_REDIRECT.into(),
            client_metadata: json!({}),
        };
        Env { idp, connection_id: conn["id"].as_str().unwrap().into(), sso, rp, app, _dir: dir }
    }

    /// One sign-in from the application's point of view.
    pub async fn login(&self, browser: &Browser, params: Value) -> (Result<Value, Value>, Vec<String>) {
        let started = self.rp.start(params);
        let (landing, visited) = browser.follow(&started.url, APP_REDIRECT).await;
        let callback = landing.app();
        (self.rp.finish(&started, callback.as_str()), visited)
    }

    pub fn went_to_idp(&self, visited: &[String]) -> bool {
        visited.iter().any(|u| u.starts_with(&self.idp.issuer))
    }
}

/// Adds `extra`'s top-level members to `base`.
fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
}
