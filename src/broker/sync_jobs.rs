//! Re-applying group sync in the background after an admin changes a connection's
//! mapping or the organization's groups, from the IdP groups stored on each user — no
//! new sign-in needed. Jobs live in the store, so any replica may run them and a job
//! cut short by a restart is taken up again.

use std::time::Duration;

use super::Broker;
use crate::core::audit::Actor;
use crate::core::group_sync::SyncJob;
use crate::store::StoreError;

impl Broker {
    /// The worker: runs queued jobs one at a time, forever. Jobs queued on another
    /// replica are found by polling; jobs a stopped process left are taken up once
    /// they have made no progress for `stalled_after`.
    pub async fn run_sync_jobs(&self, stalled_after: Duration, batch: u32) {
        loop {
            match self.store.requeue_stalled_sync_jobs(self.clock.now() - stalled_after).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "requeued sync jobs a stopped process left unfinished"),
                Err(e) => tracing::warn!(error = %e, "could not requeue interrupted sync jobs"),
            }
            match self.store.claim_sync_job().await {
                Ok(Some(job)) => self.run_sync_job(job, batch).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.sync_wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not take a sync job");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    async fn run_sync_job(&self, job: SyncJob, batch: u32) {
        let (status, done, error) = match self.resync_connection(&job, batch).await {
            Ok(done) => ("done", done, None),
            Err((done, e)) => {
                tracing::warn!(job_id = %job.id, error = %e, "sync job failed");
                ("failed", done, Some(e.to_string()))
            }
        };
        let total = done.max(job.total);
        if let Err(e) = self.store.update_sync_job(&job.id, status, total, done, error.as_deref()).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not record the end of a sync job");
        }
        tracing::info!(job_id = %job.id, status, done, "sync job finished");
    }

    /// Re-syncs every user of the job's connection, `batch` per transaction (progress
    /// is recorded after each); the users done so far on failure.
    async fn resync_connection(&self, job: &SyncJob, batch: u32) -> Result<u64, (u64, StoreError)> {
        let fail = |done: u64| move |e| (done, e);
        let store = self.store.as_ref();
        let Some(c) = store.get_connection(&job.connection_id).await.map_err(fail(0))? else { return Ok(0) };
        let (licence, _) = store.entitlements(&c.organization_id).await.map_err(fail(0))?;
        if !c.group_sync.enabled || !licence.group_sync {
            return Ok(0);
        }
        let total = store.connection_user_count(&c.id).await.map_err(fail(0))?;
        store.update_sync_job(&job.id, "running", total, 0, None).await.map_err(fail(0))?;
        let actor = Actor(format!("sync_job:{}", job.id));
        let (mut after, mut done) = (String::new(), 0);
        loop {
            // Each page is read, and its users' IdP groups and the rules, in the
            // transaction that syncs it, as they are by then.
            match store.resync_connection_users(&c.id, &after, batch, &actor).await {
                Ok(Some((last, synced))) => {
                    after = last;
                    done += synced;
                }
                Ok(None) => break,
                // The connection was deleted: so were its users' sessions; stop.
                Err(StoreError::NotFound("connection")) => return Ok(done),
                Err(e) => return Err((done, e)),
            }
            store.update_sync_job(&job.id, "running", total.max(done), done, None).await.map_err(fail(done))?;
        }
        Ok(done)
    }
}
