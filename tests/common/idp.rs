//! The npm `oidc-provider` (a certified OpenID Provider), run on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct TestIdp {
    child: Child,
    pub issuer: String,
}

impl TestIdp {
    /// Starts the OP with `config` (`{"clients": [...], "accounts": {...}}`, see tests/idp/op.mjs).
    pub fn start(config: Value) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test IdP is not installed: run `npm ci --prefix tests/idp` (scripts/test does this)"
        );
        let mut child = Command::new("node")
            .arg("op.mjs")
            .current_dir(&dir)
            .env("OP_CONFIG", config.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting node (is Node.js installed?)");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        // Keep reading: the OP logs to stdout and dies of EPIPE if nobody listens.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
            panic!("test IdP did not start: {line:?}\n{err}")
        });
        let mut stderr = child.stderr.take().unwrap();
        // The OP's own complaints (failed back-channel calls...) show with OP_DEBUG=1.
        let debug = std::env::var_os("OP_DEBUG").is_some();
        std::thread::spawn(move || {
            if debug {
                std::io::copy(&mut stderr, &mut std::io::stderr())
            } else {
                std::io::copy(&mut stderr, &mut std::io::sink())
            }
        });
        TestIdp { child, issuer: ready["issuer"].as_str().unwrap().to_owned() }
    }

    /// Takes the OP down (as an outage would).
    pub fn stop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'))
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
