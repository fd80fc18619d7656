-- 0003: who works on a session (the server holding its lease), until when,
-- and since which take (its epoch), so that servers never work on one
-- session at once.

ALTER TABLE sessions ADD COLUMN owner TEXT;
ALTER TABLE sessions ADD COLUMN lease_until_ms BIGINT;
ALTER TABLE sessions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_owner ON sessions (owner) WHERE owner IS NOT NULL;
