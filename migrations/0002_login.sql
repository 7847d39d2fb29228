-- Brokered login: ssogate's own signing keys, used login states, browser sessions, and
-- the grants (codes and tokens) issued to applications. Credentials (states, session
-- ids, codes, tokens) are stored as SHA-256 hashes; private keys sealed with the
-- encryption key.

ALTER TABLE applications ADD COLUMN client_type TEXT NOT NULL DEFAULT 'confidential';
ALTER TABLE applications ADD COLUMN id_token_signed_response_alg TEXT NOT NULL DEFAULT 'RS256';
ALTER TABLE connections ADD COLUMN allow_hmac_id_tokens BIGINT NOT NULL DEFAULT 0 CHECK (allow_hmac_id_tokens IN (0, 1));

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL,
    private_key_enc TEXT NOT NULL,
    public_jwk      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    -- Set when a newer key takes over; the public key stays published until then
    -- plus the longest token lifetime, so tokens it signed still verify.
    retired_at      BIGINT
);

-- An upstream login's state (nonce, PKCE verifier, the application's request) travels
-- sealed in a cookie of the browser that started it; the database only remembers
-- which states were used, so that each is usable once.
CREATE TABLE used_login_states (
    state_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash         TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    connection_id   TEXT REFERENCES connections(id) ON DELETE CASCADE,
    auth_time       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- One row per authorization: the code an application receives and, once the code is
-- exchanged, the access token issued for it (so an exchange is one atomic update).
CREATE TABLE grants (
    code_hash        TEXT PRIMARY KEY,
    application_id   TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    redirect_uri     TEXT NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_hash     TEXT NOT NULL,
    scope            TEXT NOT NULL,
    nonce            TEXT,
    code_challenge   TEXT,
    auth_time        BIGINT NOT NULL,
    -- The claims the tokens carry, fixed when the user signed in.
    claims           TEXT NOT NULL,
    code_expires_at  BIGINT NOT NULL,
    -- Set at the first exchange; a second exchange of the same code revokes the
    -- token the first one issued (RFC 6749 §4.1.2).
    redeemed_at      BIGINT,
    token_hash       TEXT UNIQUE,
    token_expires_at BIGINT,
    revoked          BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);
CREATE INDEX grants_session ON grants(session_hash);
