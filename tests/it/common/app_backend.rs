//! An application's backend as ssogate reaches it: an HTTP endpoint on loopback that
//! receives back-channel logout tokens and keeps them for the test to check.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Form, Router};

#[derive(serde::Deserialize)]
struct LogoutForm {
    logout_token: String,
}

pub struct AppBackend {
    pub backchannel_logout_uri: String,
    received: Arc<Mutex<Vec<String>>>,
}

impl AppBackend {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(vec![]));
        let app = Router::new()
            .route(
                "/backchannel-logout",
                post(|State(r): State<Arc<Mutex<Vec<String>>>>, Form(f): Form<LogoutForm>| async move {
                    r.lock().unwrap().push(f.logout_token);
                }),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/backchannel-logout", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        AppBackend { backchannel_logout_uri: uri, received }
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
