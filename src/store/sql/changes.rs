//! [`Changes`] over SQL: PostgreSQL LISTEN/NOTIFY for the news between replicas,
//! and a `leases` table (both databases) for jobs that must run on one replica.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;

use super::{ms, Dialect, SqlStore};
use crate::core::Timestamp;
use crate::store::{Change, ChangeListener, Changes, Heard, StoreResult};

const CHANNEL: &str = "ssogate_changes";
/// The pause before reconnecting a listener whose database is unreachable.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

#[async_trait]
impl Changes for SqlStore {
    async fn publish(&self, change: &Change) -> StoreResult<()> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        for payload in change.payloads(&self.instance) {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn listen(&self) -> StoreResult<Option<Box<dyn ChangeListener>>> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Box::new(PgChanges { listener, origin: self.instance.clone() })))
    }

    async fn try_lease(&self, name: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4) ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= $3 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(&self.instance)
        .bind(ms(now))
        .bind(ms(until))
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }
}

struct PgChanges {
    listener: PgListener,
    origin: String,
}

#[async_trait]
impl ChangeListener for PgChanges {
    async fn next(&mut self) -> Heard {
        loop {
            // `try_recv` reports a lost connection as `None` and reconnects (and
            // listens again) on the next call.
            match self.listener.try_recv().await {
                Ok(Some(n)) => match Change::parse(n.payload(), &self.origin) {
                    Some(change) => return Heard::Change(change),
                    None => continue,
                },
                Ok(None) => return Heard::Lost,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other replicas' changes failed; retrying");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }
}
