//! Webhooks: applications' endpoints and the delivery of the events outbox to them,
//! signed (HMAC-SHA256 over timestamp and body, [`crate::crypto::webhook_signature`]),
//! at least once: an event is marked delivered only after a 2xx, so a delivery cut
//! short by a crash is made again and receivers deduplicate by event id. Failures
//! are retried with backoff ([`retry_delay`]); every replica delivers, each taking
//! deliveries under a lease, one at a time per endpoint, oldest first; a retried
//! event may arrive after later ones (the event id and `created_at` give the order).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Broker;
use crate::core::audit::Actor;
use crate::core::event::{retry_delay, CreateWebhook, WebhookEndpoint};
use crate::core::ids::{new_id, IdKind};
use crate::crypto::{random_token, webhook_signature};
use crate::store::webhooks::{Attempt, DueDelivery};
use crate::store::StoreResult;

/// How many deliveries (to as many endpoints) a replica attempts at once.
const BATCH: u32 = 20;
/// How long a taken delivery is this replica's: it is taken just before its one
/// attempt, which the application client's timeout (5 s) ends well before.
const LEASE: Duration = Duration::from_secs(30);
/// Other replicas' events are found by polling this often.
const POLL: Duration = Duration::from_secs(1);
/// How long a wake-up waits for more events before delivering.
const COALESCE: Duration = Duration::from_millis(100);

/// The header carrying the signature; WorkOS's name, for receivers written for it.
pub const SIGNATURE_HEADERS: [&str; 2] = ["ssogate-signature", "workos-signature"];

impl Broker {
    /// The endpoint and its signing secret, in clear this once (it is sealed at rest).
    pub async fn create_webhook(&self, application_id: &str, new: CreateWebhook, actor: &Actor) -> StoreResult<(WebhookEndpoint, String)> {
        let t = self.clock.now();
        let endpoint = WebhookEndpoint {
            id: new_id(IdKind::Webhook),
            application_id: application_id.to_owned(),
            url: new.url,
            events: new.events,
            created_at: t,
            updated_at: t,
        };
        let secret = random_token("whsec_");
        let endpoint = self.store.create_webhook(&endpoint, &secret, actor).await?;
        Ok((endpoint, secret))
    }

    /// A new signing secret, in clear this once; the old one signs nothing more.
    pub async fn rotate_webhook_secret(&self, application_id: &str, id: &str, actor: &Actor) -> StoreResult<(WebhookEndpoint, String)> {
        let secret = random_token("whsec_");
        let endpoint = self.store.set_webhook_secret(application_id, id, &secret, actor).await?;
        Ok((endpoint, secret))
    }

    /// Delivers due events until the process stops: up to [`BATCH`] attempts at
    /// once, one per endpoint, each freed slot taken again at once (a slow endpoint
    /// delays its own events only).
    pub async fn run_webhook_deliveries(self: Arc<Self>) {
        let mut running = tokio::task::JoinSet::new();
        let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            let free = BATCH as usize - running.len();
            if free > 0 {
                let now = self.clock.now();
                let endpoints: Vec<String> = busy.values().cloned().collect();
                match self.store.claim_due_deliveries(now, now + LEASE, free as u32, &endpoints).await {
                    Ok(due) => {
                        for d in due {
                            let endpoint = d.endpoint_id.clone();
                            let me = self.clone();
                            let task = running.spawn(async move { me.deliver(d).await });
                            busy.insert(task.id(), endpoint);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook deliveries could not be taken"),
                }
            }
            tokio::select! {
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    busy.remove(&id);
                }
                // Woken by a write, wait a moment more: a burst of writes (an IdP's
                // initial push) is then taken in batches, not looked up per write.
                _ = self.deliveries_wake.notified() => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn deliver(&self, d: DueDelivery) {
        let attempt = self.attempt(&d).await;
        match &attempt {
            Attempt::Delivered { .. } => tracing::info!(delivery_id = %d.id, event = d.event.event.as_str(), "webhook delivered"),
            Attempt::Failed { error, retry_at, .. } => {
                tracing::warn!(delivery_id = %d.id, error = %error, retrying = retry_at.is_some(), "webhook delivery failed")
            }
        }
        if let Err(e) = self.store.record_attempt(&d, &attempt, self.clock.now()).await {
            // The lease runs out and the delivery is made again: at least once.
            tracing::warn!(error = %e, delivery_id = %d.id, "a webhook delivery's outcome could not be recorded");
        }
    }

    async fn attempt(&self, d: &DueDelivery) -> Attempt {
        let failed = |status: Option<u16>, error: String| {
            let retry_at = retry_delay(d.attempts + 1).map(|wait| self.clock.now() + wait);
            Attempt::Failed { status, error, retry_at }
        };
        if let Some(why) = self.app_client.refusal(&d.url) {
            return failed(None, format!("the URL is outside the network policy: {why}"));
        }
        let body = match serde_json::to_string(&d.event) {
            Ok(body) => body,
            Err(e) => return failed(None, e.to_string()),
        };
        let signature = webhook_signature(&d.secret, (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64, &body);
        let mut request = self.app_client.http.post(&d.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        for name in SIGNATURE_HEADERS {
            request = request.header(name, &signature);
        }
        match request.body(body).send().await {
            Ok(r) if r.status().is_success() => Attempt::Delivered { status: r.status().as_u16() },
            Ok(r) => failed(Some(r.status().as_u16()), format!("the endpoint answered {}", r.status())),
            Err(e) => failed(None, format!("the endpoint could not be reached: {e}")),
        }
    }
}
