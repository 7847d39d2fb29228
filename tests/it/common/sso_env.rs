//! The usual scene of a brokered-login test: ssogate, the npm OP with ssogate
//! registered as its client, an organization `acme` (domain acme.test) with one
//! connection to that OP, and one application whose browser-side is openid-client.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::balancer::Balancer;
use super::browser::{Browser, Landing};
use super::idp::{IdpSoftware, TestIdp};
use super::pg::PgDatabase;
use super::rp::RelyingParty;
use super::{free_port, Options, Ssogate};

pub const APP_REDIRECT: &str = "https://app.example.test/callback";
pub const IDP_SECRET: &str = "ssogate-at-the-idp-secret";

pub struct Env {
    pub idp: TestIdp,
    /// The (first) replica; admin calls go to it.
    pub sso: Ssogate,
    /// With several replicas: the others, and the load balancer in front of them all.
    pub other_replicas: Vec<Ssogate>,
    pub balancer: Option<Balancer>,
    pub rp: RelyingParty,
    pub connection_id: String,
    pub app: Value,
    pub provider: IdpSoftware,
    _dir: tempfile::TempDir,
    /// Last: the database goes once the replicas are stopped.
    _pg: Option<PgDatabase>,
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
    /// More than one: that many replicas on one PostgreSQL database behind a load
    /// balancer (otherwise one process on SQLite).
    pub replicas: usize,
    /// Which real OpenID Provider the connection uses.
    pub provider: IdpSoftware,
}

impl Default for EnvOptions<'_> {
    fn default() -> Self {
        EnvOptions {
            provisioning: "jit",
            app: json!({}),
            op: json!({}),
            sso_args: vec![],
            scopes: None,
            replicas: 1,
            provider: IdpSoftware::OidcProvider,
        }
    }
}

/// The key every replica shares (32 bytes, base64).
const REPLICA_KEY: &str = "c3NvZ2F0ZS10ZXN0LXJlcGxpY2Eta2V5LTMyLWJ5dGU=";

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
        let (sso, other_replicas, balancer, pg) = if o.replicas > 1 {
            let pg = PgDatabase::create().await;
            let balancer = Balancer::start(free_port()).await;
            // Started together, as a deployment rolls out: they migrate in turn.
            let replicas = futures_util::future::join_all((0..o.replicas).map(|i| {
                let replica_dir = dir.path().join(format!("replica-{i}"));
                std::fs::create_dir_all(&replica_dir).unwrap();
                let mut extra_args = o.sso_args.clone();
                extra_args.extend(["--public-url".into(), balancer.base.clone()]);
                let opts = Options {
                    extra_args,
                    database_url: Some(pg.url.clone()),
                    env: vec![("SSOGATE_ENCRYPTION_KEY".into(), REPLICA_KEY.into())],
                    ..Default::default()
                };
                async move { Ssogate::start_with(&replica_dir, opts).await }
            }))
            .await;
            balancer.set_backends(replicas.iter().map(|r| r.base.clone()).collect());
            let mut replicas = replicas.into_iter();
            (replicas.next().unwrap(), replicas.collect(), Some(balancer), Some(pg))
        } else {
            (Ssogate::start_with(dir.path(), Options { extra_args: o.sso_args, ..Default::default() }).await, vec![], None, None)
        };
        // Chosen while ssogate holds its own port, so the two cannot collide.
        let op_port = free_port();
        let (s, _) = sso.post("/organizations", json!({"name": "Acme", "slug": "acme", "domains": ["acme.test"]})).await;
        assert_eq!(s, StatusCode::CREATED);
        let issuer_suffix = o.op.get("issuer_suffix").and_then(Value::as_str).unwrap_or(o.provider.issuer_path());
        let mut connection = json!({"name": "Acme IdP", "client_id": "ssogate", "client_secret": IDP_SECRET,
                                    "discovery_url": format!("http://127.0.0.1:{op_port}{issuer_suffix}"), "provisioning": o.provisioning});
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
                // Its ID tokens then carry `sid`, which its logout messages name.
                "backchannel_logout_session_required": true,
                "grant_types": ["authorization_code", "refresh_token"],
            }],
            "accounts": accounts(),
        });
        if o.provider == IdpSoftware::LemonLdap {
            // It offers no back channel; its front-channel logout needs the URI registered.
            op["clients"][0]["frontchannel_logout_uri"] = conn["frontchannel_logout_uri"].clone();
        }
        merge(&mut op, o.op);
        let idp = TestIdp::start_provider(o.provider, op);
        let mut app = json!({"name": "App", "redirect_uris": [APP_REDIRECT]});
        merge(&mut app, o.app);
        let (s, app) = sso.post("/applications", app).await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let rp = RelyingParty {
            issuer: balancer.as_ref().map_or(&sso.base, |b| &b.base).clone(),
            client_id: app["client_id"].as_str().unwrap().into(),
            client_secret: Some(app["client_secret"].as_str().unwrap().into()),
            redirect_uri: APP_REDIRECT.into(),
            client_metadata: json!({}),
            private_jwk: None,
            library: Default::default(),
        };
        Env {
            idp,
            connection_id: conn["id"].as_str().unwrap().into(),
            sso,
            other_replicas,
            balancer,
            rp,
            app,
            provider: o.provider,
            _dir: dir,
            _pg: pg,
        }
    }

    /// One sign-in from the application's point of view. Where the IdP shows a sign-in
    /// form (LemonLDAP::NG), the person types `login_hint` as login and password.
    pub async fn login(&self, browser: &Browser, params: Value) -> (Result<Value, Value>, Vec<String>) {
        let started = self.rp.start(params.clone());
        let (mut landing, mut visited) = browser.follow(&started.url, APP_REDIRECT).await;
        if let (IdpSoftware::LemonLdap, Landing::Page(_, form), Some(login)) = (self.provider, &landing, params["login_hint"].as_str()) {
            let form_url = visited.last().expect("the form was shown somewhere").clone();
            let (signed_in, more) = browser.submit_form(&form_url, form, &[("user", login), ("password", login)], APP_REDIRECT).await;
            (landing, visited) = (signed_in, [visited, more].concat());
        }
        let callback = landing.app();
        (self.rp.finish(&started, callback.as_str()), visited)
    }

    pub fn went_to_idp(&self, visited: &[String]) -> bool {
        visited.iter().any(|u| u.starts_with(&self.idp.issuer))
    }

    pub fn app_credentials(&self) -> (String, String) {
        (self.app["client_id"].as_str().unwrap().into(), self.app["client_secret"].as_str().unwrap().into())
    }

    /// The app backend's call to the SSO user info endpoint with its own credentials.
    pub async fn sso_userinfo(&self, client_id: &str, secret: &str, access_token: &str) -> (StatusCode, Value) {
        self.sso_userinfo_at(&self.sso, client_id, secret, access_token).await
    }

    /// The same, at one replica.
    pub async fn sso_userinfo_at(&self, replica: &Ssogate, client_id: &str, secret: &str, access_token: &str) -> (StatusCode, Value) {
        let resp = replica
            .raw()
            .post(replica.url("/oauth2/sso_userinfo"))
            .basic_auth(client_id, Some(secret))
            .form(&[("token", access_token)])
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    /// The application's userinfo call through openid-client.
    pub fn app_userinfo(&self, signed_in: &Value) -> Result<Value, Value> {
        self.rp.run("userinfo", json!({"access_token": signed_in["access_token"], "sub": signed_in["id_token_claims"]["sub"]}))
    }

    pub async fn sessions_of(&self, user_id: &str) -> Vec<Value> {
        let (s, body) = self.sso.get(&format!("/users/{user_id}/sessions")).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    }
}

/// Adds `extra`'s top-level members to `base`.
fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
}
