-- 0014: users' schedules: a desktop READY at a time of day on some days in
-- a time zone; the occurrence last acted on (so a restarted server, or
-- another one, does not act on it twice) and what that run did.

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    at TEXT NOT NULL,
    days TEXT NOT NULL,
    timezone TEXT NOT NULL,
    template TEXT NOT NULL,
    size TEXT NOT NULL,
    org TEXT,
    created_ms BIGINT NOT NULL,
    last_due_ms BIGINT,
    last_run_ms BIGINT,
    last_session_id TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX schedules_user ON schedules (username);
