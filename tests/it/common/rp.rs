//! Certified relying parties as the downstream application: npm `openid-client`
//! (tests/idp/rp.mjs) and, stricter, npm `oauth4webapi` (tests/idp/rp-oauth4webapi.mjs).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

#[derive(Clone)]
pub struct RelyingParty {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
    /// Registered client metadata the library must enforce (e.g. the ID token alg).
    pub client_metadata: Value,
    pub library: Library,
}

#[derive(Clone, Copy, Debug, Default)]
pub enum Library {
    #[default]
    OpenidClient,
    Oauth4webapi,
}

/// An authorization request the library built, with what it must check on return.
pub struct Started {
    /// The extra authorization parameters (the library may check what they asked).
    pub params: Value,
    pub url: String,
    pub code_verifier: String,
    pub state: String,
    pub nonce: String,
}

impl RelyingParty {
    /// Runs one step of tests/idp/rp.mjs with this client's settings plus `extra`.
    pub fn run(&self, step: &str, extra: Value) -> Result<Value, Value> {
        let mut input = json!({
            "issuer": self.issuer, "client_id": self.client_id, "client_secret": self.client_secret, "redirect_uri": self.redirect_uri,
            "client_metadata": self.client_metadata,
        });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        let script = match self.library {
            Library::OpenidClient => "rp.mjs",
            Library::Oauth4webapi => "rp-oauth4webapi.mjs",
        };
        let out = Command::new("node").arg(script).arg(step).arg(input.to_string()).current_dir(dir).output().expect("running node");
        let text = String::from_utf8_lossy(&out.stdout);
        let value: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|_| panic!("rp.mjs printed {text:?}, stderr {}", String::from_utf8_lossy(&out.stderr)));
        if out.status.success() {
            Ok(value)
        } else {
            Err(value)
        }
    }

    pub fn start(&self, params: Value) -> Started {
        let v =
            self.run("start", json!({ "params": params.clone() })).unwrap_or_else(|e| panic!("building the authorization URL failed: {e}"));
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        Started { params, url: s("url"), code_verifier: s("code_verifier"), state: s("state"), nonce: s("nonce") }
    }

    /// Exchanges the code and validates the ID token with the library; returns
    /// `{id_token_claims, userinfo, access_token, …}` or the library's error.
    pub fn finish(&self, started: &Started, callback_url: &str) -> Result<Value, Value> {
        self.run(
            "finish",
            json!({ "callback_url": callback_url, "code_verifier": started.code_verifier, "state": started.state, "nonce": started.nonce,
                    "params": started.params }),
        )
    }
}
