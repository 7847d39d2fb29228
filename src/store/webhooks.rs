//! The events outbox: events are written in the transaction of the change they
//! tell of, with one pending delivery per subscribed webhook endpoint, so a change
//! and its news are committed together and a restart loses neither.

use async_trait::async_trait;

use super::{Page, StoreResult};
use crate::core::audit::Actor;
use crate::core::event::{Delivery, Event, EventType, WebhookEndpoint};
use crate::core::Timestamp;

/// A delivery to attempt now, with what it needs.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    /// The endpoint's signing secret, decrypted.
    pub secret: String,
    pub event: Event,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The lease this attempt holds; its outcome is recorded only under it.
    pub lease_until: Timestamp,
}

/// How an attempt went.
#[derive(Clone, Debug)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    /// Tried again at `retry_at`, or given up (`None`).
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: Option<Timestamp>,
    },
}

#[async_trait]
pub trait Webhooks: Send + Sync + 'static {
    /// Adds an endpoint to the application with its signing secret (sealed at rest).
    async fn create_webhook(&self, endpoint: &WebhookEndpoint, secret: &str, actor: &Actor) -> StoreResult<WebhookEndpoint>;
    async fn list_webhooks(&self, application_id: &str) -> StoreResult<Vec<WebhookEndpoint>>;
    async fn delete_webhook(&self, application_id: &str, id: &str, actor: &Actor) -> StoreResult<()>;
    async fn set_webhook_secret(&self, application_id: &str, id: &str, secret: &str, actor: &Actor) -> StoreResult<WebhookEndpoint>;

    /// Takes up to `limit` deliveries that are due, the oldest of each endpoint not
    /// in `busy`, each for one taker until `lease_until` (a taker that stops
    /// mid-attempt leaves it to be taken again).
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt, if the lease is still the delivery's.
    async fn record_attempt(&self, delivery: &DueDelivery, attempt: &Attempt, at: Timestamp) -> StoreResult<()>;
    /// An application's deliveries, newest first.
    async fn list_deliveries(&self, application_id: &str, page: &Page) -> StoreResult<Vec<Delivery>>;

    /// Events after `after` (an event id), oldest first, of the given types (all if empty).
    async fn list_app_events(&self, after: &str, types: &[EventType], limit: u32) -> StoreResult<Vec<Event>>;
}
