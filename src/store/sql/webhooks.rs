//! [`Webhooks`] over SQL, and [`emit`], which writes an event into the outbox
//! inside the transaction of the change it tells of.

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{cursor, from_json, from_ms, ms, record, to_json, Dialect, SqlStore, Tx};
use crate::core::audit::Actor;
use crate::core::event::{Delivery, Event, EventType, WebhookEndpoint};
use crate::core::ids::{new_id, IdKind};
use crate::core::Timestamp;
use crate::store::webhooks::{Attempt, DueDelivery, Webhooks};
use crate::store::{Page, StoreError, StoreResult};

/// Records an event of the caller's write; it is stored, with its delivery to every
/// endpoint that wants its type, when the transaction commits ([`Tx::commit`]).
///
/// Events are numbered (`seq`) in commit order: pollers read `seq > last seen`, so
/// an event committed after a later-numbered one is never skipped. PostgreSQL takes
/// the table's lock for that, with the commit, after every other statement of the
/// write (so no lock is ever awaited holding it); SQLite's writers already take turns.
pub(super) fn emit(tx: &mut Tx, at: Timestamp, organization_id: Option<&str>, event: EventType, data: Value) {
    if !tx.has_events && tx.dialect == Dialect::Postgres {
        tx.append_last("LOCK TABLE events IN EXCLUSIVE MODE", vec![]);
    }
    tx.has_events = true;
    let id = new_id(IdKind::AppEvent);
    tx.append_last(
        "INSERT INTO events (id, seq, organization_id, type, data, created_at) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events), $2, $3, $4, $5)",
        vec![id.as_str().into(), organization_id.into(), event.as_str().into(), to_json(&data).into(), ms(at).into()],
    );
    tx.append_last(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT $1 || ':' || id, id, $1, 'pending', 0, $2, $2, $2 FROM webhook_endpoints WHERE events = '[]' OR events LIKE $3",
        vec![id.into(), ms(at).into(), format!("%\"{}\"%", event.as_str()).into()],
    );
}

fn secret_context(endpoint_id: &str) -> String {
    format!("webhook:{endpoint_id}:secret")
}

fn endpoint_row(r: &AnyRow) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: r.try_get("id")?,
        application_id: r.try_get("application_id")?,
        url: r.try_get("url")?,
        events: from_json(&r.try_get::<String, _>("events")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
    })
}

fn event_type(text: &str) -> StoreResult<EventType> {
    EventType::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown event type {text}")))
}

fn event_row(r: &AnyRow) -> StoreResult<Event> {
    Ok(Event {
        id: r.try_get("id")?,
        event: event_type(&r.try_get::<String, _>("type")?)?,
        organization_id: r.try_get("organization_id")?,
        data: from_json(&r.try_get::<String, _>("data")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
    })
}

fn opt_ms(r: &AnyRow, column: &str) -> StoreResult<Option<Timestamp>> {
    r.try_get::<Option<i64>, _>(column)?.map(from_ms).transpose()
}

fn delivery_row(r: &AnyRow) -> StoreResult<Delivery> {
    let status: String = r.try_get("status")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        event_id: r.try_get("event_id")?,
        event: event_type(&r.try_get::<String, _>("type")?)?,
        next_attempt_at: if status == "pending" { opt_ms(r, "next_attempt_at")? } else { None },
        status,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        last_status: r.try_get::<Option<i64>, _>("last_status")?.map(|s| s as u16),
        last_error: r.try_get("last_error")?,
        delivered_at: opt_ms(r, "delivered_at")?,
        created_at: from_ms(r.try_get("created_at")?)?,
    })
}

impl SqlStore {
    async fn endpoint_of(&self, conn: &mut AnyConnection, application_id: &str, id: &str) -> StoreResult<WebhookEndpoint> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1 AND application_id = $2")
            .bind(id)
            .bind(application_id)
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::NotFound("webhook"))?;
        endpoint_row(&row)
    }

    fn seal_secret(&self, endpoint_id: &str, secret: &str) -> StoreResult<String> {
        self.secrets.encrypt_str(&secret_context(endpoint_id), secret).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

#[async_trait]
impl Webhooks for SqlStore {
    async fn create_webhook(&self, w: &WebhookEndpoint, secret: &str, actor: &Actor) -> StoreResult<WebhookEndpoint> {
        let sealed = self.seal_secret(&w.id, secret)?;
        let mut tx = self.write_tx().await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM applications WHERE id = $1").bind(&w.application_id).fetch_optional(&mut *tx).await?;
        known.ok_or(StoreError::NotFound("application"))?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, application_id, url, events, secret_enc, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&w.id)
        .bind(&w.application_id)
        .bind(&w.url)
        .bind(to_json(&w.events))
        .bind(sealed)
        .bind(ms(w.created_at))
        .execute(&mut *tx)
        .await?;
        let changes = json!({"url": w.url, "events": w.events, "application_id": w.application_id});
        record(&mut tx, self.clock.now(), None, actor, "webhook.created", ("webhook", &w.id), changes);
        tx.commit().await?;
        Ok(w.clone())
    }

    async fn list_webhooks(&self, application_id: &str) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query("SELECT * FROM webhook_endpoints WHERE application_id = $1 ORDER BY id")
            .bind(application_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(endpoint_row).collect()
    }

    async fn delete_webhook(&self, application_id: &str, id: &str, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        self.endpoint_of(&mut tx, application_id, id).await?;
        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
        record(&mut tx, self.clock.now(), None, actor, "webhook.deleted", ("webhook", id), json!({"application_id": application_id}));
        tx.commit().await?;
        Ok(())
    }

    async fn set_webhook_secret(&self, application_id: &str, id: &str, secret: &str, actor: &Actor) -> StoreResult<WebhookEndpoint> {
        let sealed = self.seal_secret(id, secret)?;
        let mut tx = self.write_tx().await?;
        let mut w = self.endpoint_of(&mut tx, application_id, id).await?;
        w.updated_at = self.clock.now();
        sqlx::query("UPDATE webhook_endpoints SET secret_enc = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(sealed)
            .bind(ms(w.updated_at))
            .execute(&mut *tx)
            .await?;
        record(&mut tx, w.updated_at, None, actor, "webhook.secret_rotated", ("webhook", id), json!({"application_id": application_id}));
        tx.commit().await?;
        Ok(w)
    }

    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> StoreResult<Vec<DueDelivery>> {
        // A read first: on SQLite any UPDATE takes the write lock, even one that
        // changes nothing, and the deliverer looks often.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) LIMIT 1",
        )
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(vec![]);
        }
        // One per endpoint, so that a slow endpoint holds one of the deliverer's
        // slots, not all of them. The outer conditions are checked again on each row:
        // a replica claiming at once (PostgreSQL) skips what the other took.
        let free = "status = 'pending' AND (lease_until IS NULL OR lease_until <= $1)";
        let not_busy: Vec<String> = (0..busy.len()).map(|i| format!("${}", i + 4)).collect();
        let not_busy = if busy.is_empty() { String::new() } else { format!(" AND endpoint_id NOT IN ({})", not_busy.join(", ")) };
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_until = $2 WHERE {free} AND id IN (SELECT MIN(id) FROM webhook_deliveries \
             WHERE {free} AND next_attempt_at <= $1{not_busy} GROUP BY endpoint_id ORDER BY MIN(next_attempt_at) LIMIT $3) RETURNING id"
        );
        // Its text varies with the busy endpoints: not cached on the writer's connection,
        // where it would push out the statements every write uses.
        let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(false).bind(ms(now)).bind(ms(lease_until)).bind(i64::from(limit));
        for endpoint in busy {
            q = q.bind(endpoint);
        }
        let mut writing = self.writing().await?;
        let mut ids: Vec<String> = q.fetch_all(&mut *writing).await?;
        drop(writing);
        // Oldest event first (RETURNING keeps no order).
        ids.sort();
        let mut due = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT d.attempts, w.id AS endpoint_id, w.url, w.secret_enc, e.* FROM webhook_deliveries d \
                 JOIN webhook_endpoints w ON w.id = d.endpoint_id JOIN events e ON e.id = d.event_id WHERE d.id = $1",
            )
            .bind(&id)
            .fetch_optional(&self.pool)
            .await?;
            // Its endpoint was deleted meanwhile.
            let Some(row) = row else { continue };
            let endpoint_id: String = row.try_get("endpoint_id")?;
            let sealed: String = row.try_get("secret_enc")?;
            let secret =
                self.secrets.decrypt_str(&secret_context(&endpoint_id), &sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            due.push(DueDelivery {
                id,
                endpoint_id: endpoint_id.clone(),
                url: row.try_get("url")?,
                secret,
                event: event_row(&row)?,
                attempts: row.try_get::<i64, _>("attempts")? as u32,
                lease_until,
            });
        }
        Ok(due)
    }

    async fn record_attempt(&self, d: &DueDelivery, attempt: &Attempt, at: Timestamp) -> StoreResult<()> {
        let (status, last_status, error, next, delivered) = match attempt {
            Attempt::Delivered { status } => ("delivered", Some(*status), None, None, Some(ms(at))),
            Attempt::Failed { status, error, retry_at: Some(retry) } => ("pending", *status, Some(error.as_str()), Some(ms(*retry)), None),
            Attempt::Failed { status, error, retry_at: None } => ("failed", *status, Some(error.as_str()), None, None),
        };
        let mut writing = self.writing().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, last_status = $4, last_error = $5, \
             next_attempt_at = COALESCE($6, next_attempt_at), delivered_at = $7, lease_until = NULL, updated_at = $8 \
             WHERE id = $1 AND lease_until = $2",
        )
        .bind(&d.id)
        .bind(ms(d.lease_until))
        .bind(status)
        .bind(last_status.map(i64::from))
        .bind(error)
        .bind(next)
        .bind(delivered)
        .bind(ms(at))
        .execute(&mut *writing)
        .await?;
        Ok(())
    }

    async fn list_deliveries(&self, application_id: &str, page: &Page) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT d.*, e.type FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             JOIN events e ON e.id = d.event_id WHERE w.application_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3",
        )
        .bind(application_id)
        .bind(cursor(page, true))
        .bind(page.limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn list_app_events(&self, after: &str, types: &[EventType], limit: u32) -> StoreResult<Vec<Event>> {
        let wanted: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 3)).collect();
        let of_types = if types.is_empty() { String::new() } else { format!(" AND type IN ({})", wanted.join(", ")) };
        let sql =
            format!("SELECT * FROM events WHERE seq > COALESCE((SELECT seq FROM events WHERE id = $1), 0){of_types} ORDER BY seq LIMIT $2");
        let mut q = sqlx::query(&sql).bind(after).bind(i64::from(limit));
        for t in types {
            q = q.bind(t.as_str());
        }
        q.fetch_all(&self.pool).await?.iter().map(event_row).collect()
    }
}
