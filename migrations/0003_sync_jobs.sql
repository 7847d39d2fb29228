-- Background re-application of group sync after an admin change (a connection's
-- mapping, an organization's groups), from the IdP groups stored on each user.
CREATE TABLE sync_jobs (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    reason          TEXT NOT NULL,
    -- queued, running, done or failed
    status          TEXT NOT NULL,
    total           BIGINT NOT NULL DEFAULT 0,
    done            BIGINT NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX sync_jobs_status ON sync_jobs(status, id);
CREATE INDEX sync_jobs_org ON sync_jobs(organization_id, id);
