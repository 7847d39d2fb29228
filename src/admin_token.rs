//! The admin API's bearer token: configured, or generated on first start and
//! printed once. Only its hash is ever stored.

use crate::crypto::{hash_secret, random_token, verify_secret, CryptoError};
use crate::store::{Store, StoreResult};

const SETTING: &str = "admin_token_hash";
const PREFIX: &str = "ssogate_admin_";
/// Configured tokens shorter than this are refused: the admin token opens everything.
pub const MIN_TOKEN_LEN: usize = 24;

/// Checks presented admin tokens. With `SSOGATE_ADMIN_TOKEN` set, that token; else
/// the stored hash, read on each check so a rotation takes effect on every replica.
pub struct AdminAuth {
    configured_hash: Option<String>,
}

impl AdminAuth {
    pub async fn verify(&self, presented: &str, store: &dyn Store) -> StoreResult<bool> {
        Ok(self.current_hash(store).await?.is_some_and(|hash| verify_secret(presented, &hash)))
    }

    /// The hash of the token in force (console sessions are bound to it, so that
    /// rotating the token signs every console out).
    pub async fn current_hash(&self, store: &dyn Store) -> StoreResult<Option<String>> {
        match &self.configured_hash {
            Some(h) => Ok(Some(h.clone())),
            None => store.setting(SETTING).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("SSOGATE_ADMIN_TOKEN must be at least {MIN_TOKEN_LEN} characters")]
    TooShort,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Sets up admin authentication at start. Returns the verifier and, when a token
/// was generated now, that token (for the caller to print once).
pub async fn bootstrap(store: &dyn Store, configured: Option<&str>) -> Result<(AdminAuth, Option<String>), AdminTokenError> {
    if let Some(token) = configured {
        if token.len() < MIN_TOKEN_LEN {
            return Err(AdminTokenError::TooShort);
        }
        let hash = hash_secret(token);
        store.put_setting(SETTING, &hash).await?;
        return Ok((AdminAuth { configured_hash: Some(hash) }, None));
    }
    if store.setting(SETTING).await?.is_some() {
        return Ok((AdminAuth { configured_hash: None }, None));
    }
    let token = random_token(PREFIX);
    let hash = hash_secret(&token);
    // Another replica may win the race; then its token is the one in force.
    let in_force = store.put_setting_if_absent(SETTING, &hash).await?;
    Ok((AdminAuth { configured_hash: None }, (in_force == hash).then_some(token)))
}

/// Replaces the stored token with a new one and returns it.
pub async fn rotate(store: &dyn Store) -> Result<String, AdminTokenError> {
    let token = random_token(PREFIX);
    store.put_setting(SETTING, &hash_secret(&token)).await?;
    Ok(token)
}
