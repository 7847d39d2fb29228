//! What the benchmarks share: the ssogate process under test (optionally pinned to
//! its own core), its CPU time from /proc, and admin API calls.
#![allow(dead_code)] // each benchmark uses its own part

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const ADMIN: &str = "bench-admin-token-0123456789abcdef";

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// By default ssogate gets core 0 to itself and this process (load generator and fake
/// IdP) core 1, as in production where the IdP and the clients run elsewhere; sharing
/// both cores with them inflates ssogate's CPU through contention. BENCH_PIN=0 turns
/// this off; it needs `taskset` and two cores.
fn pinned() -> bool {
    let wanted = std::env::var("BENCH_PIN").map_or(true, |v| v != "0");
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    wanted
        && two_cores
        && Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub pinned: bool,
    pub dir: tempfile::TempDir,
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

/// `ssogate serve` (release build) over a SQLite database in a fresh directory, with
/// `env` added to its environment.
pub async fn start_ssogate(http: &reqwest::Client, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pin = pinned();
    let mut command = if pin { Command::new("taskset") } else { Command::new(env!("CARGO_BIN_EXE_ssogate")) };
    if pin {
        command.args(["-c", "0", env!("CARGO_BIN_EXE_ssogate")]);
    }
    let child = command
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .env("SSOGATE_ADMIN_TOKEN", ADMIN)
        .env("SSOGATE_DATABASE_URL", format!("sqlite://{}/bench.db", dir.path().display()))
        .env("SSOGATE_LOG", "warn")
        // The load comes from one address: measured here is the work, not the limits.
        .env("SSOGATE_RATE_LIMIT_AUTHORIZE", "0")
        .env("SSOGATE_RATE_LIMIT_TOKEN", "0")
        .env("SSOGATE_RATE_LIMIT_ADMIN", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, base: format!("http://127.0.0.1:{port}"), pinned: pin, dir };
    for _ in 0..200 {
        if http.get(format!("{}/readyz", server.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ssogate did not start");
}

pub async fn admin(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    http.post(format!("{base}/api/v1{path}")).bearer_auth(ADMIN).json(&body).send().await.unwrap().json().await.unwrap()
}
