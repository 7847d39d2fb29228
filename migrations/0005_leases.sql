-- Leases on periodic jobs, so that one replica at a time runs each (e.g. purging
-- expired login state): a replica takes a lease when it is free or has expired.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
