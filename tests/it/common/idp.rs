//! Real OpenID Providers run on a free loopback port: npm `oidc-provider` (certified;
//! tests/idp/op.mjs), PyPI `django-oauth-toolkit` (tests/dot/op.py) and Debian's
//! LemonLDAP::NG (certified; tests/lemonldap/op.pl). All take the same JSON
//! configuration and print `{"issuer": …}` once they listen.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct TestIdp {
    child: Child,
    pub issuer: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdpSoftware {
    #[default]
    OidcProvider,
    DjangoOauthToolkit,
    /// Signs users in through an HTML form and logs out over the front channel only.
    LemonLdap,
}

impl IdpSoftware {
    /// What the issuer adds to `http://127.0.0.1:<port>`.
    pub fn issuer_path(self) -> &'static str {
        match self {
            IdpSoftware::OidcProvider => "",
            IdpSoftware::DjangoOauthToolkit => "/o",
            IdpSoftware::LemonLdap => "/",
        }
    }
}

impl TestIdp {
    /// Starts oidc-provider with `config` (`{"clients": [...], "accounts": {...}}`, see tests/idp/op.mjs).
    pub fn start(config: Value) -> Self {
        Self::start_provider(IdpSoftware::OidcProvider, config)
    }

    pub fn start_provider(provider: IdpSoftware, config: Value) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let (dir, program, script, installed) = match provider {
            IdpSoftware::OidcProvider => (root.join("tests/idp"), PathBuf::from("node"), "op.mjs", "node_modules/oidc-provider"),
            IdpSoftware::DjangoOauthToolkit => {
                (root.join("tests/dot"), root.join("tests/dot/.venv/bin/python"), "op.py", ".venv/bin/python")
            }
            // Installed from Debian's packages, outside the repository (an absolute path wins the join).
            IdpSoftware::LemonLdap => {
                (root.join("tests/lemonldap"), PathBuf::from("perl"), "op.pl", "/usr/share/perl5/Lemonldap/NG/Portal.pm")
            }
        };
        assert!(dir.join(installed).exists(), "the test IdP in {} is not installed: see its README or scripts/test", dir.display());
        let mut child = Command::new(&program)
            .arg(script)
            .current_dir(&dir)
            .env("OP_CONFIG", config.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
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

    /// A test control of the OP (`/test/...`, served at its origin), as an IdP admin acts.
    pub fn control_url(&self, path: &str) -> String {
        format!("{}{path}", url::Url::parse(&self.issuer).unwrap().origin().ascii_serialization())
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
