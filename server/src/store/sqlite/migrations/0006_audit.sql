-- 0006: the audit trail.

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    peer        TEXT NOT NULL,
    action      TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    owner       TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_time ON audit (time_ms, id);
CREATE INDEX audit_session ON audit (session_id, time_ms) WHERE session_id != '';
