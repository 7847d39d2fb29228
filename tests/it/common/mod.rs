//! Test harness: the real `ssogate` binary, the real `oidc-provider` OP, and a small
//! fake IdP for faults a certified OP never produces.

pub mod app_backend;
pub mod balancer;
pub mod browser;
pub mod fake_idp;
pub mod fake_op;
pub mod idp;
pub mod pg;
pub mod pg_server;
pub mod rp;
pub mod sso_env;
pub mod webhook_receiver;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `ssogate serve` over a database in `dir`; killed when dropped.
pub struct Ssogate {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
    printed: Arc<Mutex<String>>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    http: reqwest::Client,
}

pub struct Options {
    /// `None`: let ssogate generate the admin token.
    pub admin_token: Option<String>,
    pub dev: bool,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A port chosen beforehand (when the IdP must know ssogate's callback URL).
    pub port: Option<u16>,
    /// Default: a SQLite file in the directory.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { admin_token: Some(ADMIN_TOKEN.into()), dev: true, extra_args: vec![], env: vec![], port: None, database_url: None }
    }
}

impl Ssogate {
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, Options::default()).await
    }

    pub async fn start_with(dir: &Path, opts: Options) -> Self {
        let port = opts.port.unwrap_or_else(free_port);
        let mut args = vec!["serve".to_owned(), "--listen".into(), format!("127.0.0.1:{port}")];
        if opts.dev {
            args.push("--dev".into());
        }
        args.extend(opts.extra_args);
        // Tests of other things must not trip the abuse limits (tests/it/limits.rs sets them).
        let mut env: Vec<(String, String)> =
            ["SSOGATE_RATE_LIMIT_AUTHORIZE", "SSOGATE_RATE_LIMIT_TOKEN", "SSOGATE_RATE_LIMIT_ADMIN"].map(|v| (v.into(), "0".into())).into();
        env.extend(opts.env);
        let database_url = opts.database_url.unwrap_or_else(|| format!("sqlite://{}/ssogate.db", dir.display()));
        env.push(("SSOGATE_DATABASE_URL".into(), database_url));
        if let Some(t) = opts.admin_token {
            env.push(("SSOGATE_ADMIN_TOKEN".into(), t));
        }
        Self::launch(dir, port, args, env).await
    }

    async fn launch(dir: &Path, port: u16, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssogate"));
        cmd.args(&args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
        for var in
            ["SSOGATE_ADMIN_TOKEN", "SSOGATE_ENCRYPTION_KEY", "SSOGATE_DEV", "SSOGATE_PUBLIC_URL", "SSOGATE_LISTEN", "SSOGATE_DATABASE_URL"]
        {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawning ssogate");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                panic!("ssogate exited early ({status}):\n{err}");
            }
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "ssogate did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What ssogate prints (the generated admin token), collected as it comes.
        let stdout = child.stdout.take().unwrap();
        let printed = Arc::new(Mutex::new(String::new()));
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        // Keep stderr drained so a chatty server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let log_path = dir.join(format!("ssogate-{port}.log"));
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).unwrap();
            std::io::copy(&mut BufReader::new(stderr), &mut log).ok();
        });
        Ssogate { child, base, dir: dir.to_owned(), printed, env, args, http }
    }

    /// Stops the process (SIGKILL) and starts it again over the same database.
    pub async fn restart(mut self) -> Self {
        self.child.kill().ok();
        self.child.wait().ok();
        let port = free_port();
        let mut args = self.args.clone();
        args[2] = format!("127.0.0.1:{port}");
        Self::launch(&self.dir, port, args, self.env.clone()).await
    }

    /// Kills the process (SIGKILL, as a crash would) and starts it again on the same
    /// port over the same database.
    pub async fn crash_and_restart(mut self) -> Self {
        self.child.kill().ok();
        self.child.wait().ok();
        let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
        Self::launch(&self.dir, port, self.args.clone(), self.env.clone()).await
    }

    /// Restarts with these environment variables changed.
    pub async fn restart_with_env(mut self, vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            self.env.retain(|(existing, _)| existing != k);
            self.env.push(((*k).into(), (*v).into()));
        }
        self.restart().await
    }

    /// What ssogate printed on stdout, waiting up to `patience` for `until` to appear.
    pub fn stdout(&self, until: &str, patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let out = self.printed.lock().unwrap().clone();
            if out.contains(until) || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The server's log so far (for assertions that secrets never appear in it).
    pub fn log(&self) -> String {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An admin API call with the test admin token.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.api_as(Some(ADMIN_TOKEN), method, path, body).await
    }

    pub async fn api_as(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(&format!("/api/v1{path}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request to ssogate");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.api(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.api(Method::DELETE, path, None).await
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    /// The Prometheus exposition text, read with the admin token.
    pub async fn metrics(&self) -> String {
        let resp = self.http.get(self.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    }
}

impl Drop for Ssogate {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Polls `check` every 200 ms until it returns `Some`, for up to `patience`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(patience: Duration, what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts an admin API error: status, code, and the field it names.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "unexpected status, body: {body}");
    assert_eq!(body["error"]["code"], code, "unexpected code, body: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {body}");
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "unexpected field, body: {body}");
    }
}

/// The sum of a metric's samples whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
