-- Applications as complete OAuth clients: refresh tokens (`offline_access`), access
-- tokens as JWTs, client authentication by signed JWT (`private_key_jwt`), and
-- front-channel logout.
--
-- A grant is one token family: its code, then the access and refresh tokens each
-- refresh rotates. Every refresh token ever issued in the family is kept (hashed)
-- until the grant goes, so that presenting a spent one is recognised as reuse and
-- revokes the family (RFC 9700 §4.14.2).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL REFERENCES grants(code_hash) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL,
    -- Set when it was exchanged for the next one.
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens(code_hash);

-- When the grant's current access token was issued (introspection's `iat`), and its
-- scope when a refresh narrowed it (NULL: the grant's; the family keeps the grant's,
-- RFC 6749 §6).
ALTER TABLE grants ADD COLUMN token_issued_at BIGINT;
ALTER TABLE grants ADD COLUMN token_scope TEXT;
-- Whether the grant has a refresh token: such a grant outlives its access token.
ALTER TABLE grants ADD COLUMN refreshable BIGINT NOT NULL DEFAULT 0 CHECK (refreshable IN (0, 1));

-- `opaque` (the default) or `jwt` (RFC 9068), and the `aud` of JWT access tokens
-- (the API they are for; NULL: the application's own client id).
ALTER TABLE applications ADD COLUMN access_token_format TEXT NOT NULL DEFAULT 'opaque';
ALTER TABLE applications ADD COLUMN access_token_audience TEXT;

-- How the client authenticates (NULL: by its type, `none` for public clients and
-- `client_secret_basic` otherwise), and for `private_key_jwt` its public keys: a JWK
-- set (JSON) or where to fetch one.
ALTER TABLE applications ADD COLUMN token_endpoint_auth_method TEXT;
ALTER TABLE applications ADD COLUMN jwks TEXT;
ALTER TABLE applications ADD COLUMN jwks_uri TEXT;

-- OpenID Connect Front-Channel Logout 1.0 §2: the page ssogate frames when a session
-- of the application ends in the browser, and whether it is told `iss` and `sid`.
ALTER TABLE applications ADD COLUMN frontchannel_logout_uri TEXT;
ALTER TABLE applications ADD COLUMN frontchannel_logout_session_required BIGINT NOT NULL DEFAULT 0
    CHECK (frontchannel_logout_session_required IN (0, 1));
