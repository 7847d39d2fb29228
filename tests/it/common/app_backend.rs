//! An application's backend as ssogate reaches it: an HTTP endpoint on loopback that
//! receives back-channel logout tokens and keeps them for the test to check, serves
//! its front-channel logout page (recording each load's query), and publishes the
//! application's public keys (`jwks_uri`, for `private_key_jwt`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
struct LogoutForm {
    logout_token: String,
}

pub struct AppBackend {
    /// Where the application's own pages are (`<base>/app/…` answers any of them).
    pub base: String,
    pub backchannel_logout_uri: String,
    pub frontchannel_logout_uri: String,
    pub jwks_uri: String,
    received: Arc<Mutex<Vec<String>>>,
    /// The query of each load of the front-channel logout page.
    frontchannel: Arc<Mutex<Vec<String>>>,
    /// The key set served, and how often it was fetched.
    jwks: Arc<Mutex<(Value, usize)>>,
}

impl AppBackend {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(vec![]));
        let jwks = Arc::new(Mutex::new((json!({"keys": []}), 0)));
        let keys = jwks.clone();
        let frontchannel = Arc::new(Mutex::new(vec![]));
        let loads = frontchannel.clone();
        let app = Router::new()
            .route(
                "/backchannel-logout",
                post(|State(r): State<Arc<Mutex<Vec<String>>>>, Form(f): Form<LogoutForm>| async move {
                    r.lock().unwrap().push(f.logout_token);
                }),
            )
            .with_state(received.clone())
            .route("/app/{*page}", get(|| async { axum::response::Html("<p>the application</p>") }))
            .route(
                "/frontchannel-logout",
                get(move |RawQuery(q): RawQuery| {
                    let loads = loads.clone();
                    async move {
                        loads.lock().unwrap().push(q.unwrap_or_default());
                        axum::response::Html("<p>signed out of the app</p>")
                    }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let keys = keys.clone();
                    async move {
                        let mut served = keys.lock().unwrap();
                        served.1 += 1;
                        Json(served.0.clone())
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        AppBackend {
            base: base.clone(),
            backchannel_logout_uri: format!("{base}/backchannel-logout"),
            frontchannel_logout_uri: format!("{base}/frontchannel-logout"),
            jwks_uri: format!("{base}/jwks"),
            received,
            frontchannel,
            jwks,
        }
    }

    /// Publishes these public keys at `jwks_uri` from now on.
    pub fn publish_keys(&self, keys: &[&Value]) {
        self.jwks.lock().unwrap().0 = json!({ "keys": keys });
    }

    /// The query strings the front-channel logout page was loaded with.
    pub fn frontchannel_loads(&self) -> Vec<String> {
        self.frontchannel.lock().unwrap().clone()
    }

    /// How many times the key set was fetched.
    pub fn key_fetches(&self) -> usize {
        self.jwks.lock().unwrap().1
    }

    /// The logout tokens received so far, waiting up to `patience` for at least `n`.
    pub async fn logout_tokens(&self, n: usize, patience: Duration) -> Vec<String> {
        let deadline = Instant::now() + patience;
        loop {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
