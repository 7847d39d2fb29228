-- Security review fixes.
-- Each connection answers at its own redirect URI (RFC 9700 §4.4.2). Connections that
-- exist now keep the shared one until their admin registers the new URI at the IdP and
-- switches; until then only answers naming their issuer (RFC 9207 iss) are taken.
ALTER TABLE connections ADD COLUMN shared_redirect_uri BIGINT NOT NULL DEFAULT 0 CHECK (shared_redirect_uri IN (0, 1));
UPDATE connections SET shared_redirect_uri = 1;
-- First sign-ins link to existing users by email only when the IdP says it is verified,
-- unless the connection trusts its IdP's unverified addresses.
ALTER TABLE connections ADD COLUMN trust_unverified_email BIGINT NOT NULL DEFAULT 0 CHECK (trust_unverified_email IN (0, 1));
-- Which emails an organization's IdPs may vouch for: `domains` (its own domains only;
-- others reach applications as unverified), `any` (it trusts its IdPs for any domain),
-- or `require_domains` (sign-ins with an email outside its domains are refused).
ALTER TABLE organizations ADD COLUMN email_policy TEXT NOT NULL DEFAULT 'domains';
-- Deleting an organization ends its sessions first.
CREATE INDEX sessions_organization ON sessions(organization_id);
