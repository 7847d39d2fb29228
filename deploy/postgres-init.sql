-- The role the ssogate replicas run as: it reads and writes data, never changes the
-- schema (`ssogate migrate` runs as the owner). Tables created later by migrations
-- get the same rights through the default privileges.
CREATE ROLE ssogate_service LOGIN PASSWORD 'service-password';
GRANT CONNECT ON DATABASE ssogate TO ssogate_service;
GRANT USAGE ON SCHEMA public TO ssogate_service;
ALTER DEFAULT PRIVILEGES FOR ROLE ssogate_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ssogate_service;
