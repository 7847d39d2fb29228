-- Front-channel logout naming the user by subject, for IdPs whose ID tokens carry no
-- `sid` (LemonLDAP::NG 2.16 sends the subject as `sid`). Opt-in per connection.
ALTER TABLE connections ADD COLUMN frontchannel_logout_by_subject BIGINT NOT NULL DEFAULT 0 CHECK (frontchannel_logout_by_subject IN (0, 1));
