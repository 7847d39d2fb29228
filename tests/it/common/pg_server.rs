//! A PostgreSQL server of the test's own (initdb in a temporary directory, on a free
//! port), for tests that stop and start the database under a running ssogate —
//! which the shared server other tests use must never be.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub struct PgServer {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

/// PostgreSQL refuses to run as root; as root, the server runs as `postgres`.
fn command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// `pg_config --bindir` when it names a directory with initdb, else Debian's layout.
fn server_binaries() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|d| d.join("initdb").exists());
    from_pg_config.or_else(|| {
        let mut versions: Vec<PathBuf> =
            std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(Result::ok).map(|e| e.path().join("bin")).collect();
        versions.sort();
        versions.into_iter().rev().find(|d| d.join("initdb").exists())
    })
}

fn run(mut c: Command) {
    let out = c.output().expect("running a PostgreSQL tool");
    assert!(out.status.success(), "{c:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = server_binaries().expect("PostgreSQL's server binaries (initdb, pg_ctl)");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // The server's user must own its directory.
        run({
            let mut c = Command::new("chmod");
            c.args(["0777"]).arg(dir.path());
            c
        });
        let mut init = command(&bin, "initdb");
        init.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"]).arg(&data);
        run(init);
        let server = PgServer { port: free_port(), data, bin, _dir: dir };
        server.start_again();
        server
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server as an administrator would for a restart: connections are cut.
    pub fn stop(&self) {
        let mut c = command(&self.bin, "pg_ctl");
        c.args(["-D"]).arg(&self.data).args(["-m", "fast", "-w", "stop"]);
        run(c);
    }

    pub fn start_again(&self) {
        let mut c = command(&self.bin, "pg_ctl");
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off", self.port);
        c.args(["-D"]).arg(&self.data).args(["-o", &options, "-w", "-l"]).arg(self.data.join("server.log")).arg("start");
        run(c);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut c = command(&self.bin, "pg_ctl");
        c.args(["-D"]).arg(&self.data).args(["-m", "immediate", "stop"]);
        c.output().ok();
    }
}
