-- Sessions gain a public id (the `sid` applications see, and what admins revoke), an
-- idle lifetime, and the identity provider's tokens (sealed) with the schedule of
-- their background refresh. Applications may ask for back-channel logout.

ALTER TABLE sessions ADD COLUMN id TEXT;
UPDATE sessions SET id = 'ses_' || substr(id_hash, 8, 26);
CREATE UNIQUE INDEX sessions_id ON sessions(id);
ALTER TABLE sessions ADD COLUMN idle_expires_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET idle_expires_at = expires_at;
ALTER TABLE sessions ADD COLUMN last_active_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET last_active_at = created_at;
-- The IdP's subject and session id, which its back-channel logout tokens name.
ALTER TABLE sessions ADD COLUMN idp_sub TEXT;
ALTER TABLE sessions ADD COLUMN idp_sid TEXT;
CREATE INDEX sessions_idp ON sessions(connection_id, idp_sub);
-- JSON of core::session::UpstreamTokens, sealed with the encryption key.
ALTER TABLE sessions ADD COLUMN upstream_enc TEXT;
-- When the upstream tokens are next refreshed (NULL: never), and a replica's claim
-- on doing it, so that one refresh runs once across replicas.
ALTER TABLE sessions ADD COLUMN refresh_at BIGINT;
ALTER TABLE sessions ADD COLUMN refresh_claimed_until BIGINT;
ALTER TABLE sessions ADD COLUMN refreshed_at BIGINT;
ALTER TABLE sessions ADD COLUMN refresh_failing_since BIGINT;
ALTER TABLE sessions ADD COLUMN refresh_error TEXT;
CREATE INDEX sessions_refresh ON sessions(refresh_at);

-- The session a grant was made under, by public id: ID tokens carry it as `sid`.
ALTER TABLE grants ADD COLUMN session_id TEXT;

ALTER TABLE applications ADD COLUMN backchannel_logout_uri TEXT;
