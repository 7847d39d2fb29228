-- Directory sync (SCIM 2.0): directories pushing an organization's users and groups.

-- A deactivated user (by their directory) keeps their record and cannot sign in.
ALTER TABLE users ADD COLUMN active BIGINT NOT NULL DEFAULT 1 CHECK (active IN (0, 1));

-- Which source sets the memberships of a user both a directory and a groups claim
-- speak for: 'directory' or 'sign_in'.
ALTER TABLE organizations ADD COLUMN groups_source TEXT NOT NULL DEFAULT 'directory';

-- connection_id: the IdP whose people the directory pushes, whose matching rule
-- links them to users who sign in and whose group mapping its groups go through.
CREATE TABLE directories (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    connection_id    TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    token_hash       TEXT NOT NULL,
    token_rotated_at BIGINT NOT NULL,
    last_request_at  BIGINT,
    last_error       TEXT,
    last_error_at    BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX directories_org ON directories(organization_id, id);

-- A user as their directory knows them: at most one directory per user.
-- user_name_key: userName lowercased (SCIM compares it case-insensitively).
CREATE TABLE directory_users (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    directory_id  TEXT NOT NULL REFERENCES directories(id) ON DELETE CASCADE,
    user_name     TEXT NOT NULL,
    user_name_key TEXT NOT NULL,
    external_id   TEXT,
    resource      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (directory_id, user_name_key)
);
CREATE INDEX directory_users_external ON directory_users(directory_id, external_id);
CREATE INDEX directory_users_page ON directory_users(directory_id, user_id);

CREATE TABLE directory_groups (
    id               TEXT PRIMARY KEY,
    directory_id     TEXT NOT NULL REFERENCES directories(id) ON DELETE CASCADE,
    display_name     TEXT NOT NULL,
    display_name_key TEXT NOT NULL,
    external_id      TEXT,
    resource         TEXT NOT NULL,
    version          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (directory_id, display_name_key)
);
CREATE INDEX directory_groups_external ON directory_groups(directory_id, external_id);
CREATE INDEX directory_groups_page ON directory_groups(directory_id, id);

-- A group's members as the directory sent them (member: the entry, as JSON). A member
-- counts for group sync only when it is a user of the group's own directory; other
-- values (users ssogate does not know, nested groups) are kept and returned as sent.
CREATE TABLE directory_group_members (
    group_id   TEXT NOT NULL REFERENCES directory_groups(id) ON DELETE CASCADE,
    member_id  TEXT NOT NULL,
    member     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX directory_group_members_member ON directory_group_members(member_id);
