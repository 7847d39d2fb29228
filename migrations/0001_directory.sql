-- ssogate directory schema, shared by SQLite and PostgreSQL (written in their common
-- dialect). Times are Unix milliseconds; flags are 0/1 (sqlx's Any driver reads no
-- SQLite boolean); lists and free-form objects are JSON text.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE organization_domains (
    domain          TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE
);
CREATE INDEX organization_domains_org ON organization_domains(organization_id);

CREATE TABLE connections (
    id                    TEXT PRIMARY KEY,
    organization_id       TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    client_secret_enc     TEXT NOT NULL,
    discovery_url         TEXT NOT NULL,
    scopes                TEXT NOT NULL,
    logout_url            TEXT,
    provisioning          TEXT NOT NULL,
    user_match            TEXT NOT NULL,
    group_sync            TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX connections_org ON connections(organization_id);

CREATE TABLE applications (
    id                        TEXT PRIMARY KEY,
    name                      TEXT NOT NULL,
    client_id                 TEXT NOT NULL UNIQUE,
    client_secret_hash        TEXT NOT NULL,
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    expose_idp_tokens         BIGINT NOT NULL CHECK (expose_idp_tokens IN (0, 1)),
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    connection_id   TEXT REFERENCES connections(id) ON DELETE SET NULL,
    email           TEXT,
    email_verified  BIGINT NOT NULL CHECK (email_verified IN (0, 1)),
    first_name      TEXT,
    last_name       TEXT,
    username        TEXT,
    picture         TEXT,
    idp_sub         TEXT,
    idp_groups      TEXT NOT NULL,
    attributes      TEXT NOT NULL,
    last_login_at   BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (organization_id, email),
    UNIQUE (organization_id, username),
    UNIQUE (organization_id, idp_sub)
);

CREATE TABLE groups (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    description     TEXT,
    permissions     TEXT NOT NULL,
    is_default      BIGINT NOT NULL CHECK (is_default IN (0, 1)),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);

-- source: 'manual' (set by an admin) or 'sync' (from the IdP's groups claim).
CREATE TABLE group_memberships (
    group_id   TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_memberships_user ON group_memberships(user_id);

CREATE TABLE entitlements (
    organization_id TEXT PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    sso             BIGINT NOT NULL CHECK (sso IN (0, 1)),
    group_sync      BIGINT NOT NULL CHECK (group_sync IN (0, 1)),
    max_users       BIGINT,
    expires_at      BIGINT,
    updated_at      BIGINT NOT NULL
);

-- No foreign key: the trail of a deleted organization outlives it.
CREATE TABLE audit_events (
    id              TEXT PRIMARY KEY,
    organization_id TEXT,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    target_type     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    changes         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX audit_events_org ON audit_events(organization_id, id);
