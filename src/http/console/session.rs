//! The console's session: a cookie sealed with the encryption key (so any replica
//! can read it), holding its id, its expiry, the CSRF token the page must echo in a
//! header, and a tag of the admin token it was opened with. Signing out records the
//! id as used in the database, so a copied cookie dies on every replica at once.

use serde::{Deserialize, Serialize};

use crate::crypto::{hash_secret, random_token, verify_secret, SecretBox};

pub const COOKIE: &str = "ssogate_console";
/// A console session lasts a working day.
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
const CONTEXT: &str = "console_session";

#[derive(Serialize, Deserialize)]
pub struct ConsoleSession {
    /// Random; recorded as used when the session is signed out.
    id: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub csrf: String,
    /// `hash_secret` of the admin token's hash: rotating the token ends the session.
    admin_tag: String,
}

impl ConsoleSession {
    pub fn new(admin_hash: &str, now: i64) -> Self {
        ConsoleSession {
            id: random_token(""),
            expires_at: now + LIFETIME.as_secs() as i64,
            csrf: random_token(""),
            admin_tag: hash_secret(admin_hash),
        }
    }

    pub fn seal(&self, sealer: &SecretBox) -> Option<String> {
        sealer.encrypt(CONTEXT, &serde_json::to_vec(self).ok()?).ok()
    }

    /// The session in `sealed`, if genuine, unexpired, and opened with the admin
    /// token still in force.
    pub fn open(sealer: &SecretBox, sealed: &str, admin_hash: &str, now: i64) -> Option<Self> {
        let s: ConsoleSession = serde_json::from_slice(&sealer.decrypt(CONTEXT, sealed).ok()?).ok()?;
        (s.expires_at > now && verify_secret(admin_hash, &s.admin_tag)).then_some(s)
    }

    /// The handle under which signing out records this session as ended.
    pub fn ended_handle(&self) -> String {
        hash_secret(&format!("console_session:{}", self.id))
    }

    /// Constant-time check of the CSRF header.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        verify_secret(presented, &hash_secret(&self.csrf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_only_genuine_current_and_for_the_token_in_force() {
        let sealer = SecretBox::new(&[3; 32]);
        let s = ConsoleSession::new("sha256:admin", 1000);
        let sealed = s.seal(&sealer).unwrap();
        let opened = ConsoleSession::open(&sealer, &sealed, "sha256:admin", 1001).unwrap();
        assert!(opened.csrf_matches(&s.csrf) && !opened.csrf_matches("other"));
        assert!(ConsoleSession::open(&sealer, &sealed, "sha256:rotated", 1001).is_none(), "token rotated");
        assert!(ConsoleSession::open(&sealer, &sealed, "sha256:admin", 1000 + LIFETIME.as_secs() as i64).is_none(), "expired");
        assert!(ConsoleSession::open(&SecretBox::new(&[4; 32]), &sealed, "sha256:admin", 1001).is_none(), "other key");
        assert!(ConsoleSession::open(&sealer, "v1:forged", "sha256:admin", 1001).is_none());
    }
}
