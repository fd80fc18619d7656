-- 0004: each event's kind and time as columns (retention prunes output
-- lines by time; older rows are classified in Rust after this step, see
-- migrate.rs); request keys, so a repeated create finds its session.

ALTER TABLE events ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN time_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_output_time ON events (time_ms) WHERE kind = 2;
ALTER TABLE sessions ADD COLUMN request_key TEXT;
CREATE INDEX sessions_request ON sessions (request_key, created_ms) WHERE request_key IS NOT NULL;
CREATE INDEX sessions_created ON sessions (created_ms, id);
