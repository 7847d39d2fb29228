//! Keeping this replica's caches in step with the others': what changes here is
//! forgotten here at once and announced; what the others announce is forgotten when
//! heard. While this replica cannot hear them, it forgets everything when it starts
//! hearing again, and its caches trust no entry for long in between.

use std::sync::Arc;
use std::time::Duration;

use super::Broker;
use crate::store::{Change, Heard, Stale};

/// The pause before listening again when the database refused a listener, or the
/// last one was lost as soon as it listened.
const LISTEN_RETRY: Duration = Duration::from_secs(2);

impl Broker {
    /// Forgets cached access tokens (revoked, or re-issued with new claims) here and
    /// on the other replicas.
    pub(super) async fn forget_tokens(&self, hashes: Vec<String>) {
        if hashes.is_empty() {
            return;
        }
        self.tokens.remove(&hashes);
        self.announce(Change::Tokens(hashes)).await;
    }

    async fn announce(&self, change: Change) {
        if let Err(e) = self.store.publish(&change).await {
            tracing::warn!(error = %e, "telling other replicas of a change failed; their cached tokens expire within 30 s");
        }
    }

    /// Runs for the life of the process: applies the other replicas' changes.
    pub async fn run_change_listener(self: Arc<Self>) {
        self.config.set_hearing(false);
        loop {
            let mut listener = match self.store.listen().await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    // No other replica can change anything.
                    self.config.set_hearing(true);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other replicas' changes failed; retrying");
                    tokio::time::sleep(LISTEN_RETRY).await;
                    continue;
                }
            };
            // Whatever happened before listening started is unknown.
            self.forget_everything().await;
            self.config.set_hearing(true);
            let listening_since = std::time::Instant::now();
            loop {
                match listener.next().await {
                    Heard::Change(Change::Configuration(stale)) => {
                        self.config.forget(&stale);
                        if matches!(stale, Stale::SigningKeys | Stale::Everything) {
                            self.reload_keys().await;
                        }
                    }
                    Heard::Change(Change::Tokens(hashes)) => self.tokens.remove(&hashes),
                    Heard::Lost => {
                        tracing::warn!("lost the change feed; forgetting cached configuration and tokens until it is back");
                        self.config.set_hearing(false);
                        self.forget_everything().await;
                        if listening_since.elapsed() < LISTEN_RETRY {
                            tokio::time::sleep(LISTEN_RETRY).await;
                        }
                        break;
                    }
                }
            }
        }
    }

    async fn forget_everything(&self) {
        self.config.forget_everything();
        self.tokens.clear();
        self.reload_keys().await;
    }

    /// Picks up signing keys another replica may have rotated.
    pub async fn reload_keys(&self) {
        if let Err(e) = self.keys.reload(self.store.as_ref()).await {
            tracing::warn!(error = %e, "reloading signing keys failed");
        }
    }
}
