//! What the benchmarks share: the ssogate process under test (optionally pinned to
//! its own core), its CPU time from /proc, and admin API calls.
#![allow(dead_code)] // each benchmark uses its own part

pub mod floor;
pub mod postgres;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "bench-admin-token-0123456789abcdef";
pub const APP: &str = "https://app.example.test/cb";

/// A finished login: the tokens, and the time spent waiting on ssogate (its own
/// requests only, not the IdP's).
pub struct Login {
    pub access_token: String,
    /// Given for `offline_access` only.
    pub refresh_token: Option<String>,
    pub in_ssogate: Duration,
}

/// The scopes a benchmark sign-in asks for.
pub const SCOPE: &str = "openid email profile";

/// Why a login did not finish: an HTTP status from ssogate, or an OAuth error.
#[derive(Debug)]
pub enum LoginFailure {
    Status(u16),
    OAuth(String),
}

/// One full login as a fresh browser would make it (carrying ssogate's cookies by
/// hand, so one HTTP client serves every simulated browser).
pub async fn browser_login(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    secret: &str,
    organization: &str,
    login_hint: Option<&str>,
) -> Result<Login, LoginFailure> {
    sign_in_with_scope(http, base, (client_id, secret), organization, login_hint, SCOPE).await
}

/// [`browser_login`] asking for `scope`.
pub async fn sign_in_with_scope(
    http: &reqwest::Client,
    base: &str,
    (client_id, secret): (&str, &str),
    organization: &str,
    login_hint: Option<&str>,
    scope: &str,
) -> Result<Login, LoginFailure> {
    let hint = login_hint.map(|h| format!("&login_hint={h}")).unwrap_or_default();
    let scope = scope.replace(' ', "%20");
    let mut url = format!(
        "{base}/oauth2/authorize?client_id={client_id}&redirect_uri={APP}&response_type=code&scope={scope}&state=s&nonce=n&organization={organization}{hint}"
    );
    let mut cookies: Vec<String> = vec![];
    let mut in_ssogate = Duration::ZERO;
    let code = loop {
        let mut req = http.get(&url);
        let ours = url.starts_with(base);
        if ours && !cookies.is_empty() {
            req = req.header("cookie", cookies.join("; "));
        }
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|_| LoginFailure::Status(0))?;
        if ours {
            in_ssogate += started.elapsed();
        }
        for c in resp.headers().get_all("set-cookie") {
            cookies.push(c.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let Some(location) = resp.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned) else {
            return Err(LoginFailure::Status(resp.status().as_u16()));
        };
        if location.starts_with(APP) {
            let u = url::Url::parse(&location).unwrap();
            let param = |name: &str| u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
            break param("code").ok_or_else(|| LoginFailure::OAuth(format!("{:?}: {:?}", param("error"), param("error_description"))))?;
        }
        url = location;
    };
    let started = std::time::Instant::now();
    let resp = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", APP)])
        .send()
        .await
        .map_err(|_| LoginFailure::Status(0))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|_| LoginFailure::Status(status))?;
    in_ssogate += started.elapsed();
    let access_token = body["access_token"].as_str().ok_or(LoginFailure::Status(status))?.to_owned();
    let refresh_token = body["refresh_token"].as_str().map(str::to_owned);
    Ok(Login { access_token, refresh_token, in_ssogate })
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    try_cpu_seconds(pid).expect("the process is running")
}

/// utime + stime of a process that may have ended, in seconds.
pub fn try_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// By default ssogate gets core 0 to itself and this process (load generator and fake
/// IdP) core 1, as in production where the IdP and the clients run elsewhere; sharing
/// both cores with them inflates ssogate's CPU through contention. BENCH_PIN=0 turns
/// this off; it needs `taskset` and two cores.
pub fn pinned() -> bool {
    // Decided once: pinned, this process sees one core.
    static PINNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PINNED.get_or_init(|| {
        let wanted = std::env::var("BENCH_PIN").map_or(true, |v| v != "0");
        let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        wanted
            && two_cores
            && Command::new("taskset")
                .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub pinned: bool,
    /// Kept while any holder has it: a benchmark restarts ssogate on the same database.
    pub dir: Arc<tempfile::TempDir>,
    /// From the start of the process until `/readyz` answered.
    pub ready_after: Duration,
}

impl Server {
    /// The database ssogate runs on, for a benchmark to seed or watch.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}/bench.db", self.dir.path().display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `program` with `args` and `--listen` on a free loopback port, on core 0 when
/// [`pinned`]; its stderr is this process's when BENCH_SSOGATE_LOG is set.
pub fn start_pinned(program: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, String, bool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pin = pinned();
    let mut command = if pin { Command::new("taskset") } else { Command::new(program) };
    if pin {
        command.args(["-c", "0", program]);
    }
    // BENCH_SSOGATE_LOG: ssogate's log filter, its log then on this one's stderr (e.g.
    // `sqlx::query=debug` lists every statement).
    let log = std::env::var("BENCH_SSOGATE_LOG").ok();
    let child = command
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().copied())
        .envs(log.as_deref().map(|filter| ("SSOGATE_LOG", filter)))
        .stdout(Stdio::null())
        .stderr(if log.is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"), pin)
}

/// A child process killed when this goes.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Waits for `url` to answer 2xx.
pub async fn wait_until_up(http: &reqwest::Client, url: &str) {
    for _ in 0..2000 {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{url} did not answer");
}

/// `ssogate serve` (release build) over a SQLite database in a fresh directory, with
/// `env` added to its environment.
pub async fn start_ssogate(http: &reqwest::Client, env: &[(&str, &str)]) -> Server {
    start_ssogate_in(http, Arc::new(tempfile::tempdir().unwrap()), env).await
}

/// [`start_ssogate`] in the directory of an earlier run (its SQLite database kept).
pub async fn start_ssogate_in(http: &reqwest::Client, dir: Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> Server {
    let database = format!("sqlite://{}/bench.db", dir.path().display());
    let mut all_env = vec![
        ("SSOGATE_ADMIN_TOKEN", ADMIN),
        ("SSOGATE_DATABASE_URL", database.as_str()),
        ("SSOGATE_LOG", "warn"),
        // The load comes from one address: measured here is the work, not the limits.
        ("SSOGATE_RATE_LIMIT_AUTHORIZE", "0"),
        ("SSOGATE_RATE_LIMIT_TOKEN", "0"),
        ("SSOGATE_RATE_LIMIT_ADMIN", "0"),
    ];
    all_env.extend_from_slice(env);
    let started = Instant::now();
    let (child, base, pinned) = start_pinned(env!("CARGO_BIN_EXE_ssogate"), &["serve", "--dev"], &all_env);
    let mut server = Server { child, base, pinned, dir, ready_after: Duration::ZERO };
    wait_until_up(http, &format!("{}/readyz", server.base)).await;
    server.ready_after = started.elapsed();
    server
}

pub async fn admin(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    http.post(format!("{base}/api/v1{path}")).bearer_auth(ADMIN).json(&body).send().await.unwrap().json().await.unwrap()
}

/// Requests/s and CPU per request of `url` with `token`, from 64 clients for `secs`.
pub async fn hammer(http: &reqwest::Client, url: &str, token: &str, pid: u32, secs: u64) -> (f64, f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (http, url, token, ok, failed) = (http.clone(), url.to_owned(), token.to_owned(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match http.get(&url).bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => {
                            r.bytes().await.ok();
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let n = ok.load(Ordering::Relaxed) as f64;
    (n / started.elapsed().as_secs_f64(), (cpu_seconds(pid) - cpu_before) * 1e6 / n, failed.load(Ordering::Relaxed))
}
