//! Certified relying parties as the downstream application: npm `openid-client`
//! (tests/idp/rp.mjs) and, stricter, npm `oauth4webapi` (tests/idp/rp-oauth4webapi.mjs);
//! and PyPI Authlib (tests/authlib/rp.py) for refresh, revocation and introspection.

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
    /// For `private_key_jwt`: the client's private key (a JWK), which the library
    /// signs its client assertions with instead of sending a secret.
    pub private_jwk: Option<Value>,
    pub library: Library,
}

#[derive(Clone, Copy, Debug, Default)]
pub enum Library {
    #[default]
    OpenidClient,
    Oauth4webapi,
    /// No sign-in steps: `refresh`, `revoke` and `introspect` only.
    Authlib,
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
            "client_metadata": self.client_metadata, "private_jwk": self.private_jwk,
        });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
        let (program, script, dir) = match self.library {
            Library::OpenidClient => ("node".into(), "rp.mjs", tests.join("idp")),
            Library::Oauth4webapi => ("node".into(), "rp-oauth4webapi.mjs", tests.join("idp")),
            Library::Authlib => (tests.join("authlib/.venv/bin/python"), "rp.py", tests.join("authlib")),
        };
        let out = Command::new(&program).arg(script).arg(step).arg(input.to_string()).current_dir(dir).output().expect("running the RP");
        let text = String::from_utf8_lossy(&out.stdout);
        let value: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|_| panic!("rp.mjs printed {text:?}, stderr {}", String::from_utf8_lossy(&out.stderr)));
        if out.status.success() {
            Ok(value)
        } else {
            Err(value)
        }
    }

    /// The same client with other credentials (a resource server's, another app's).
    pub fn as_client(&self, client_id: &str, client_secret: Option<&str>) -> RelyingParty {
        RelyingParty { client_id: client_id.into(), client_secret: client_secret.map(str::to_owned), ..self.clone() }
    }

    /// The same client authenticating with `private_key_jwt` and this private key.
    pub fn with_private_key(&self, private_jwk: &Value) -> RelyingParty {
        RelyingParty { client_secret: None, private_jwk: Some(private_jwk.clone()), ..self.clone() }
    }

    pub fn with_library(&self, library: Library) -> RelyingParty {
        RelyingParty { library, ..self.clone() }
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
