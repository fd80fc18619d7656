-- 0001: the first schema: sessions (one row each, with its slot and VM) and
-- their events (the encoded protobuf, numbered per session).

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    username         TEXT NOT NULL,
    session_user     TEXT NOT NULL DEFAULT '',
    template         TEXT NOT NULL,
    state            INTEGER NOT NULL,
    slot             INTEGER NOT NULL,
    slot_released    INTEGER NOT NULL DEFAULT 0,
    vm_name          TEXT NOT NULL UNIQUE,
    vm_id            TEXT NOT NULL DEFAULT '',
    ssh_host         TEXT NOT NULL DEFAULT '',
    ssh_port         INTEGER NOT NULL DEFAULT 0,
    rdp_host         TEXT NOT NULL DEFAULT '',
    rdp_port         INTEGER NOT NULL DEFAULT 0,
    failure_stage    INTEGER NOT NULL DEFAULT 0,
    failure_reason   TEXT NOT NULL DEFAULT '',
    child_pgid       INTEGER,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    stage_started_ms INTEGER NOT NULL,
    ready_ms         INTEGER
);
CREATE INDEX sessions_user ON sessions (username, created_ms);
CREATE INDEX sessions_live_slots ON sessions (slot) WHERE slot_released = 0;
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq        INTEGER NOT NULL,
    body       BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
