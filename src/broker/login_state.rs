//! An upstream login in flight (the application's request, the nonce and PKCE verifier
//! sent to the IdP) travels sealed in a cookie of the browser that started it: the
//! authorize endpoint writes nothing to the database, any replica can finish the
//! login, and the login is bound to that browser. AES-256-GCM with the state's hash
//! as associated data, so a sealed state fits only its own `state`.

use serde::{Deserialize, Serialize};

use crate::core::authorize::AuthorizeRequest;
use crate::core::connection::SHARED_CALLBACK_PATH;
use crate::crypto::SecretBox;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginState {
    pub organization_id: String,
    pub connection_id: String,
    pub nonce: String,
    pub pkce_verifier: Option<String>,
    pub request: AuthorizeRequest,
    /// Unix seconds.
    pub expires_at: i64,
    /// An admin's try-it sign-in from the console: it ends on a preview, writes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trial: bool,
    /// Sent to the IdP with the shared redirect URI (a connection from before each
    /// had its own); the answer must then name its issuer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_callback: bool,
}

impl LoginState {
    /// The redirect URI this login sent to the IdP (and must send again with the code).
    pub fn redirect_uri(&self, public_url: &str) -> String {
        let shared = format!("{public_url}{SHARED_CALLBACK_PATH}");
        if self.shared_callback {
            shared
        } else {
            format!("{shared}/{}", self.connection_id)
        }
    }
}

/// Browsers keep cookies of up to 4096 bytes; beyond this the request is refused
/// rather than silently losing its cookie.
pub const MAX_SEALED_LEN: usize = 3800;

/// One cookie per login, so sign-ins in several tabs do not overwrite each other.
pub fn cookie_name(state_hash: &str) -> String {
    let tail = state_hash.strip_prefix("sha256:").unwrap_or(state_hash);
    format!("ssogate_login_{}", &tail[..16.min(tail.len())])
}

fn context(state_hash: &str) -> String {
    format!("login_state:{state_hash}")
}

pub fn seal(sealer: &SecretBox, state_hash: &str, s: &LoginState) -> Option<String> {
    let json = serde_json::to_vec(s).ok()?;
    sealer.encrypt(&context(state_hash), &json).ok()
}

/// The login state, if `sealed` is genuine and belongs to `state_hash`.
pub fn open(sealer: &SecretBox, state_hash: &str, sealed: &str) -> Option<LoginState> {
    let json = sealer.decrypt(&context(state_hash), sealed).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LoginState {
        LoginState {
            organization_id: "org_1".into(),
            connection_id: "conn_1".into(),
            nonce: "n".into(),
            pkce_verifier: Some("v".into()),
            request: AuthorizeRequest { client_id: "client_1".into(), ..Default::default() },
            expires_at: 1,
            trial: false,
            shared_callback: false,
        }
    }

    #[test]
    fn sealed_states_open_only_for_their_own_state() {
        let sealer = SecretBox::new(&[9; 32]);
        let sealed = seal(&sealer, "sha256:aaa", &state()).unwrap();
        assert!(!sealed.contains("conn_1"), "sealed, not encoded");
        assert_eq!(open(&sealer, "sha256:aaa", &sealed), Some(state()));
        assert_eq!(open(&sealer, "sha256:bbb", &sealed), None);
        assert_eq!(open(&SecretBox::new(&[8; 32]), "sha256:aaa", &sealed), None);
        assert_eq!(open(&sealer, "sha256:aaa", "v1:garbage"), None);
    }

    #[test]
    fn cookie_names_are_per_state_and_cookie_safe() {
        let name = cookie_name("sha256:AbC-_0123456789xyzLONGER");
        assert_eq!(name, "ssogate_login_AbC-_0123456789x");
        assert_ne!(cookie_name("sha256:one-state-hash-x"), cookie_name("sha256:other-state-hash"));
    }
}
