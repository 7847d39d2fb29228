-- A user's memberships as one range of one index, carrying what reading a user needs
-- (group and source): a page of 100 users reads 100 ranges instead of a table lookup
-- per membership, scattered over the file.
DROP INDEX group_memberships_user;
CREATE INDEX group_memberships_user ON group_memberships(user_id, group_id, source);
