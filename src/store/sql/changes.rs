//! [`Changes`] over SQL: PostgreSQL LISTEN/NOTIFY for the news between replicas,
//! and a `leases` table (both databases) for jobs that must run on one replica.

use async_trait::async_trait;
use sqlx::postgres::PgListener;

use super::logins::enqueue_sync_jobs_in;
use super::{ms, Dialect, SqlStore, Tx};
use crate::core::Timestamp;
use crate::store::{Change, ChangeListener, Changes, Heard, OnChange, Stale, StoreResult};

const CHANNEL: &str = "ssogate_changes";

/// The members whose groups an admin write may have changed, to be synced again.
#[derive(Clone, Copy, Debug)]
pub(super) enum Resync<'a> {
    Nobody,
    /// Every connection of the organization that syncs groups.
    Organization(&'a str),
    Connection {
        organization_id: &'a str,
        connection_id: &'a str,
    },
}

impl SqlStore {
    /// Commits an admin write together with what follows from it: the re-sync jobs it
    /// calls for (`reason` names the write) and the notice that tells other replicas
    /// what cached configuration it made stale, if any. PostgreSQL delivers a NOTIFY
    /// only when its transaction commits, so the write, its audit row (written by the
    /// caller), its jobs and its notice happen together or not at all. This process
    /// forgets the same before the write returns.
    pub(super) async fn commit_change(&self, mut tx: Tx, resync: Resync<'_>, stale: Option<Stale>, reason: &str) -> StoreResult<()> {
        match resync {
            Resync::Nobody => {}
            Resync::Organization(organization_id) => {
                enqueue_sync_jobs_in(&mut tx, organization_id, None, reason, self.clock.now()).await?;
            }
            Resync::Connection { organization_id, connection_id } => {
                enqueue_sync_jobs_in(&mut tx, organization_id, Some(connection_id), reason, self.clock.now()).await?;
            }
        }
        let Some(stale) = stale else { return Ok(tx.commit().await?) };
        if self.dialect == Dialect::Postgres {
            for payload in Change::Configuration(stale.clone()).payloads(&self.instance) {
                sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&mut *tx).await?;
            }
        }
        // The commit and the forgetting after it run to the end even if the request is
        // cancelled meanwhile: a write that lands unseen by this replica's cache would be
        // served stale from it for good. An unclear outcome (an error after COMMIT was
        // sent) forgets too; a needless forget costs one read.
        let forget = self.on_change.get().cloned();
        let committed = tokio::spawn(async move {
            let committed = tx.commit().await;
            if let Some(forget) = forget {
                forget(&stale);
            }
            committed
        });
        committed.await.map_err(|e| sqlx::Error::Io(std::io::Error::other(format!("the commit's task failed: {e}"))))??;
        Ok(())
    }
}
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
        // A lost connection is reported, never mended quietly: what was said while it
        // was down is lost, and the broker must forget everything and listen anew.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(Some(Box::new(PgChanges { listener, origin: self.instance.clone() })))
    }

    fn on_change(&self, forget: OnChange) {
        if self.on_change.set(forget).is_err() {
            tracing::error!("a second on_change hook was refused: the first stays");
        }
    }

    async fn try_lease(&self, name: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let mut writing = self.writing().await?;
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4) ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= $3 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(&self.instance)
        .bind(ms(now))
        .bind(ms(until))
        .execute(&mut *writing)
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
            match self.listener.try_recv().await {
                Ok(Some(n)) => match Change::parse(n.payload(), &self.origin) {
                    Some(change) => return Heard::Change(change),
                    None => continue,
                },
                Ok(None) => return Heard::Lost,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other replicas' changes failed");
                    return Heard::Lost;
                }
            }
        }
    }
}
