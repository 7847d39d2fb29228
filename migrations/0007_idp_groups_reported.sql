-- When the IdP last reported a user's groups (its groups claim was present). A re-sync
-- job leaves users whose groups were never reported as they are: turning group sync
-- on must not strip everyone who has not signed in since.
ALTER TABLE users ADD COLUMN idp_groups_at BIGINT;
UPDATE users SET idp_groups_at = updated_at WHERE idp_groups <> '[]';
