//! The broker in process, for its unit tests (kanidm's `#[idm_test]` in spirit): a
//! store on SQLite in a temporary directory, the in-repo fake OP on a loopback port,
//! one organization with a connection to it and one application, and a clock the
//! test holds and moves. A browser is played by hand: the test carries the cookies
//! and follows the one redirect the fake OP answers with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::token::TokenReply;
use super::{Broker, ConfigCache, KeyRing, Lifetimes, Reply, TokenCache};
use crate::core::application::{Application, CreateApplication};
use crate::core::audit::Actor;
use crate::core::claims::ClaimLimits;
use crate::core::clock::TestClock;
use crate::core::connection::{Connection, CreateConnection};
use crate::core::network::NetworkPolicy;
use crate::core::organization::CreateOrganization;
use crate::core::session::RefreshPolicy;
use crate::crypto::SecretBox;
use crate::outbound::AppClient;
use crate::store::{SqlStore, Store};
use crate::upstream::{IdpClient, Providers};

// Shared with the integration tests, which use more of it.
#[allow(dead_code)]
#[path = "../../tests/it/common/fake_op.rs"]
pub mod fake_op;

use fake_op::FakeOp;

pub const ISSUER: &str = "https://sso.example.test";
pub const APP_REDIRECT: &str = "https://app.example.test/cb";

pub struct Scene {
    pub broker: Arc<Broker>,
    pub clock: Arc<TestClock>,
    pub op: FakeOp,
    pub connection: Connection,
    pub app: Application,
    _dir: tempfile::TempDir,
}

/// What an application got from one sign-in, and the browser's cookies after it.
pub struct SignedIn {
    pub tokens: TokenReply,
    pub cookies: HashMap<String, String>,
}

fn actor() -> Actor {
    Actor("test".into())
}

impl Scene {
    pub async fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock::at(crate::core::now()));
        let secrets = Arc::new(SecretBox::new(&[7; 32]));
        let url = format!("sqlite://{}", dir.path().join("broker.db").display());
        let store = SqlStore::connect(&url, secrets.clone()).await.unwrap().with_clock(clock.clone());
        store.migrate().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let op = FakeOp::start("ssogate").await;
        let lifetimes = Lifetimes::default();
        let keys = Arc::new(KeyRing::load(store.as_ref(), lifetimes.id_token, clock.clone()).await.unwrap());
        let idp =
            IdpClient::new(NetworkPolicy::for_idps(true, vec![]), Duration::from_secs(5), Default::default(), 1 << 20, 1_000).unwrap();
        let broker = Arc::new(Broker {
            store,
            providers: Providers::new(idp, 1_000),
            keys,
            tokens: TokenCache::default(),
            config: ConfigCache::new(clock.clone(), 1_000),
            sealer: secrets,
            sync_wake: tokio::sync::Notify::new(),
            deliveries_wake: tokio::sync::Notify::new(),
            scim_activity: crate::broker::activity_cache(),
            issuer: ISSUER.into(),
            lifetimes,
            refresh: RefreshPolicy::default(),
            app_client: AppClient::new(NetworkPolicy::for_applications(true, vec![]), Duration::from_secs(5)).unwrap(),
            client_keys: Default::default(),
            claim_limits: ClaimLimits::default(),
            clock: clock.clone(),
        });
        broker.store.on_change(broker.config.on_own_change());
        broker.config.set_hearing(true); // one process: no other replica to hear

        // Set up as an admin would, through the directory service and the API's own input.
        let org: CreateOrganization = serde_json::from_value(json!({"name": "Acme", "slug": "acme", "domains": ["acme.test"]})).unwrap();
        let org = broker.create_organization(org.validate().unwrap(), &actor()).await.unwrap();
        let connection: CreateConnection = serde_json::from_value(json!({
            "name": "Fake", "client_id": "ssogate", "client_secret": "fake-secret", "discovery_url": op.issuer,
            "scopes": ["openid", "email", "profile"],
        }))
        .unwrap();
        let (settings, secret) = connection.validate(broker.providers.client().policy()).unwrap();
        let connection = broker.create_connection(&org.id, settings, &secret, &actor()).await.unwrap();
        let app: CreateApplication = serde_json::from_value(json!({"name": "App", "redirect_uris": [APP_REDIRECT]})).unwrap();
        let (app, _) = broker.create_application(app.validate(&broker.app_client.policy).unwrap(), &actor()).await.unwrap();
        Scene { broker, clock, op, connection, app, _dir: dir }
    }

    /// The application's authorization request, as its browser sends it.
    pub async fn authorize(&self, extra: &[(&str, &str)], cookies: &HashMap<String, String>) -> Reply {
        let pairs: Vec<(String, String)> = [
            ("client_id", self.app.client_id.as_str()),
            ("redirect_uri", APP_REDIRECT),
            ("response_type", "code"),
            ("scope", "openid email profile"),
            ("state", "app-state"),
            ("nonce", "app-nonce"),
            ("organization", "acme"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        self.broker.authorize(pairs, cookies).await
    }

    /// A sign-in from start to tokens: at the IdP when the browser has no session
    /// (`login` signs in there), from the session when it has one.
    pub async fn sign_in(&self, login: &str, mut cookies: HashMap<String, String>) -> SignedIn {
        let mut reply = self.authorize(&[("login_hint", login)], &cookies).await;
        if let Reply::Redirect { location, cookies: set } = &reply {
            if location.starts_with(&self.op.issuer) {
                keep(&mut cookies, set);
                let answer =
                    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(location).send().await;
                let callback = answer.unwrap().headers()["location"].to_str().unwrap().to_owned();
                let callback = url::Url::parse(&callback).unwrap();
                let pairs = callback.query_pairs().into_owned().collect();
                reply = self.broker.callback(Some(&self.connection.id), pairs, &cookies).await;
            }
        }
        let Reply::Redirect { location, cookies: set } = reply else { panic!("the sign-in did not reach the application: {reply:?}") };
        keep(&mut cookies, &set);
        let back = url::Url::parse(&location).unwrap();
        let param = |name: &str| back.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let code = param("code").unwrap_or_else(|| panic!("no code: {location}"));
        let form: HashMap<String, String> = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", APP_REDIRECT)]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let tokens = self.broker.token(&self.app, form).await.unwrap();
        SignedIn { tokens, cookies }
    }

    /// The claims userinfo answers for `access_token`, if it is still good.
    pub async fn userinfo(&self, access_token: &str) -> Option<Value> {
        let body = self.broker.userinfo(access_token).await.ok()?;
        Some(serde_json::from_slice(&body).unwrap())
    }
}

/// Keeps the cookies a reply sets (and drops those it clears), as a browser does.
fn keep(cookies: &mut HashMap<String, String>, set: &[super::SetCookie]) {
    for c in set {
        match &c.value {
            Some(v) => cookies.insert(c.name.clone(), v.clone()),
            None => cookies.remove(&c.name),
        };
    }
}
