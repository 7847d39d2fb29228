//! An application's webhook endpoint on loopback: keeps what it receives, and can be
//! told to fail, so that retries can be watched.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// One request as received: its signature header and body.
#[derive(Clone, Debug)]
pub struct Received {
    pub signature: String,
    pub body: String,
}

#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    /// The status to answer with (200 unless told otherwise).
    answer: Arc<AtomicU16>,
    /// How long to take before answering, in seconds.
    delay: Arc<AtomicU16>,
}

pub struct WebhookReceiver {
    pub url: String,
    shared: Shared,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let shared = Shared { answer: Arc::new(AtomicU16::new(200)), ..Default::default() };
        let app = Router::new()
            .route(
                "/hooks",
                post(|State(s): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                    let signature = headers.get("ssogate-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    s.received.lock().unwrap().push(Received { signature, body: String::from_utf8_lossy(&body).into_owned() });
                    tokio::time::sleep(Duration::from_secs(s.delay.load(Ordering::SeqCst).into())).await;
                    StatusCode::from_u16(s.answer.load(Ordering::SeqCst)).unwrap()
                }),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        WebhookReceiver { url, shared }
    }

    /// Answers only after `secs` seconds (a slow application).
    pub fn answer_after(&self, secs: u16) {
        self.shared.delay.store(secs, Ordering::SeqCst);
    }

    pub fn answer_with(&self, status: u16) {
        self.shared.answer.store(status, Ordering::SeqCst);
    }

    /// What was received so far, waiting up to `patience` until `enough` says so.
    pub async fn received_until(&self, patience: Duration, enough: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + patience;
        loop {
            let got = self.shared.received.lock().unwrap().clone();
            if enough(&got) || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
