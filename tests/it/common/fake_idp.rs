//! A tiny in-process HTTP server that serves whatever documents a test gives it, for
//! the broken identity providers a certified OP will not imitate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(Clone, Default)]
pub struct FakeIdp {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
}

impl FakeIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeIdp { base, routes: Default::default() };
        let app = Router::new().route("/{*path}", get(serve)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        fake
    }

    /// Serves `body` with `status` at `path` (which starts with `/`).
    pub fn set(&self, path: &str, status: u16, body: impl Into<String>) {
        self.routes.lock().unwrap().insert(path.trim_start_matches('/').to_owned(), (status, body.into()));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn serve(State(fake): State<FakeIdp>, Path(path): Path<String>) -> Response {
    match fake.routes.lock().unwrap().get(&path) {
        Some((status, body)) => {
            (StatusCode::from_u16(*status).unwrap(), [("content-type", "application/json")], body.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
