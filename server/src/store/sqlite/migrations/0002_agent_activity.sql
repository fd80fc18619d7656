-- 0002: what the in-VM agent reports (activity, users, version) and the
-- idle warning announced, so a restart resets nobody's idle clock.

ALTER TABLE sessions ADD COLUMN last_report_ms INTEGER;
ALTER TABLE sessions ADD COLUMN last_input_ms INTEGER;
ALTER TABLE sessions ADD COLUMN last_connected_ms INTEGER;
ALTER TABLE sessions ADD COLUMN rdp_clients INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN logged_in TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN warned_reap_ms INTEGER;
