-- Indexes for the admin API's lists at scale: each page is found by keyset on the
-- index (organization, then id) instead of sorting all of an organization's rows
-- per page (a 100,000-user organization took a full sort per page).
CREATE INDEX users_organization_page ON users(organization_id, id);
CREATE INDEX groups_organization_page ON groups(organization_id, id);

-- The audit log filtered by target (a user's or connection's history) or by
-- action, newest first, without reading every entry of the organization.
CREATE INDEX audit_events_target ON audit_events(organization_id, target_id, id);
CREATE INDEX audit_events_action ON audit_events(organization_id, action, id);

-- A connection's users, for its group re-sync, by keyset.
CREATE INDEX users_connection_page ON users(connection_id, id);
CREATE INDEX directories_connection ON directories(connection_id);
