//! A load balancer in front of several ssogate replicas, as in a real deployment,
//! that records which replica served each request. The steps of a login
//! (`authorize`, the IdP's callback, `token`, `userinfo`) go to the replicas in
//! turn, so consecutive steps land on different replicas; other requests
//! (discovery, JWKS) take turns separately.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, Response, StatusCode};

const LOGIN_STEPS: [&str; 4] = ["/oauth2/authorize", "/sso/callback", "/oauth2/token", "/oauth2/userinfo"];
const HOP_BY_HOP: [&str; 4] = ["connection", "transfer-encoding", "content-length", "host"];

type Backends = Arc<Mutex<Vec<String>>>;

pub struct Balancer {
    pub base: String,
    backends: Backends,
    served: Arc<Mutex<Vec<(String, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    backends: Backends,
    login_turn: Arc<AtomicUsize>,
    other_turn: Arc<AtomicUsize>,
    served: Arc<Mutex<Vec<(String, usize)>>>,
    http: reqwest::Client,
}

impl Balancer {
    /// Listens on `port` (chosen beforehand: the replicas' public URL names it).
    pub async fn start(port: u16) -> Balancer {
        let served = Arc::new(Mutex::new(vec![]));
        let shared = Shared {
            backends: Default::default(),
            login_turn: Default::default(),
            other_turn: Default::default(),
            served: served.clone(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
        let backends = shared.backends.clone();
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Balancer { base: format!("http://127.0.0.1:{port}"), backends, served, task }
    }

    /// The replicas' own addresses; requests wait for them with 502 until set.
    pub fn set_backends(&self, backends: Vec<String>) {
        *self.backends.lock().unwrap() = backends;
    }

    /// Which replica (by index) served each request so far, by path.
    pub fn served(&self) -> Vec<(String, usize)> {
        self.served.lock().unwrap().clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(s): State<Shared>, req: Request) -> Response<Body> {
    // Every connection's callback counts as the one login step (recorded without its id).
    let path = match req.uri().path() {
        p if p.starts_with("/sso/callback/") => "/sso/callback".to_owned(),
        p => p.to_owned(),
    };
    let backends = s.backends.lock().unwrap().clone();
    if backends.is_empty() {
        return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::empty()).unwrap();
    }
    let turn = if LOGIN_STEPS.contains(&path.as_str()) { &s.login_turn } else { &s.other_turn };
    let index = turn.fetch_add(1, Ordering::SeqCst) % backends.len();
    s.served.lock().unwrap().push((path, index));

    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let mut out = s.http.request(req.method().clone(), format!("{}{path_and_query}", backends[index]));
    for (name, value) in req.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    let body = to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let answer = match out.body(body).send().await {
        Ok(a) => a,
        Err(_) => return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::empty()).unwrap(),
    };
    let mut resp = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            resp = resp.header(HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(), value.as_bytes());
        }
    }
    resp.body(Body::from(answer.bytes().await.unwrap_or_default())).unwrap()
}
