-- Events for applications: what directories changed and which sessions ended, kept
-- for polling and delivered to subscribed webhooks from this outbox (at least once,
-- surviving restarts).

-- seq: commit order (pollers page by it; ids are creation order, which concurrent
-- transactions may commit out of).
CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL UNIQUE,
    organization_id TEXT,
    type            TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_type ON events(type, id);

-- events: the event types wanted, as JSON (empty: all). secret_enc: the HMAC key,
-- sealed (ssogate signs with it, so it cannot be hashed).
CREATE TABLE webhook_endpoints (
    id             TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    events         TEXT NOT NULL,
    secret_enc     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_app ON webhook_endpoints(application_id, id);

-- status: 'pending' (due at next_attempt_at; leased while an attempt runs),
-- 'delivered' or 'failed' (retries spent).
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, id);
