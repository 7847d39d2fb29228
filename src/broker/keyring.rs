//! The signing keys in force: one active key per algorithm, and the JWKS that
//! publishes every key whose tokens may still be in use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;

use crate::core::audit::Actor;
use crate::core::clock::Clock;
use crate::core::ids::{new_id, IdKind};
use crate::core::Timestamp;
use crate::oidc::keys::{KeyError, SigningAlg, SigningKey};
use crate::store::{Store, StoreError, StoredSigningKey};
use crate::sync;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct KeyRing {
    active: RwLock<HashMap<SigningAlg, Arc<SigningKey>>>,
    jwks: RwLock<Arc<String>>,
    /// How long a retired key stays published: the longest token lifetime.
    retention: Duration,
    clock: Arc<dyn Clock>,
}

impl KeyRing {
    /// Loads the keys, creating an active one for each algorithm that has none.
    pub async fn load(store: &dyn Store, retention: Duration, clock: Arc<dyn Clock>) -> Result<Self, KeyRingError> {
        let ring = KeyRing { active: Default::default(), jwks: RwLock::new(Arc::new(String::new())), retention, clock };
        let stored = store.signing_keys().await?;
        for alg in SigningAlg::ALL {
            if !stored.iter().any(|k| k.alg == alg.as_str() && k.retired_at.is_none()) {
                ring.add(store, alg, false, &Actor("system".into())).await?;
            }
        }
        ring.reload(store).await?;
        Ok(ring)
    }

    async fn add(&self, store: &dyn Store, alg: SigningAlg, replace: bool, actor: &Actor) -> Result<(), KeyRingError> {
        let kid = new_id(IdKind::Event).replacen("evt_", "key_", 1);
        let (key, pkcs8) = SigningKey::generate(alg, kid.clone())?;
        store
            .add_signing_key(
                &StoredSigningKey {
                    kid,
                    alg: alg.as_str().into(),
                    pkcs8,
                    public_jwk: key.public_jwk(),
                    created_at: self.clock.now(),
                    retired_at: None,
                },
                replace,
                actor,
            )
            .await?;
        Ok(())
    }

    /// Re-reads the keys from the store (another replica may have rotated them).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), KeyRingError> {
        let cutoff: Timestamp = self.clock.now() - self.retention;
        store.delete_signing_keys_retired_before(cutoff).await?;
        let stored = store.signing_keys().await?;
        let mut active = HashMap::new();
        for k in stored.iter().filter(|k| k.retired_at.is_none()) {
            if let Some(alg) = SigningAlg::parse(&k.alg) {
                active.insert(alg, Arc::new(SigningKey::from_pkcs8(alg, k.kid.clone(), &k.pkcs8)?));
            }
        }
        let keys: Vec<_> = stored.iter().map(|k| k.public_jwk.clone()).collect();
        *sync::write(&self.jwks) = Arc::new(json!({ "keys": keys }).to_string());
        *sync::write(&self.active) = active;
        Ok(())
    }

    /// Replaces the active key of `alg`; the old one stays published for `retention`.
    pub async fn rotate(&self, store: &dyn Store, alg: SigningAlg, actor: &Actor) -> Result<(), KeyRingError> {
        self.add(store, alg, true, actor).await?;
        self.reload(store).await
    }

    pub fn signer(&self, alg: SigningAlg) -> Option<Arc<SigningKey>> {
        sync::read(&self.active).get(&alg).cloned()
    }

    pub fn jwks(&self) -> Arc<String> {
        sync::read(&self.jwks).clone()
    }
}
