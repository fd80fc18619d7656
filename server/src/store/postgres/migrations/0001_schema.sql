-- 0001: the whole schema as the embedded store has it after its eighth
-- migration: sessions (one row each, with its slot, VM, activity and warm
-- pool), their numbered events, the audit trail and the portal's sign-ins.

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    username          TEXT NOT NULL,
    login_user        TEXT NOT NULL DEFAULT '',
    template          TEXT NOT NULL,
    state             INTEGER NOT NULL,
    slot              INTEGER NOT NULL,
    slot_released     BOOLEAN NOT NULL DEFAULT FALSE,
    vm_name           TEXT NOT NULL UNIQUE,
    vm_id             TEXT NOT NULL DEFAULT '',
    ssh_host          TEXT NOT NULL DEFAULT '',
    ssh_port          INTEGER NOT NULL DEFAULT 0,
    rdp_host          TEXT NOT NULL DEFAULT '',
    rdp_port          INTEGER NOT NULL DEFAULT 0,
    rdp_cert_sha256   TEXT NOT NULL DEFAULT '',
    failure_stage     INTEGER NOT NULL DEFAULT 0,
    failure_reason    TEXT NOT NULL DEFAULT '',
    child_pgid        INTEGER,
    child_identity    TEXT,
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    stage_started_ms  BIGINT NOT NULL,
    ready_ms          BIGINT,
    last_report_ms    BIGINT,
    last_input_ms     BIGINT,
    last_connected_ms BIGINT,
    rdp_clients       INTEGER NOT NULL DEFAULT 0,
    logged_in         TEXT NOT NULL DEFAULT '[]',
    agent_version     TEXT NOT NULL DEFAULT '',
    warned_reap_ms    BIGINT,
    request_key       TEXT,
    pool              TEXT,
    claimed_ms        BIGINT
);
CREATE INDEX sessions_user ON sessions (username, created_ms);
CREATE UNIQUE INDEX sessions_live_slots ON sessions (slot) WHERE NOT slot_released;
CREATE INDEX sessions_state ON sessions (state);
CREATE INDEX sessions_request ON sessions (request_key, created_ms) WHERE request_key IS NOT NULL;
CREATE INDEX sessions_created ON sessions (created_ms, id);
CREATE INDEX sessions_pool ON sessions (pool, state) WHERE pool IS NOT NULL;

CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq        BIGINT NOT NULL,
    body       BYTEA NOT NULL,
    kind       INTEGER NOT NULL,
    time_ms    BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX events_output_time ON events (time_ms) WHERE kind = 2;

CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time_ms     BIGINT NOT NULL,
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

CREATE TABLE web_signins (
    id_hash      TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    admin        BOOLEAN NOT NULL,
    csrf         TEXT NOT NULL,
    key          TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    checked_ms   BIGINT NOT NULL
);
CREATE INDEX web_signins_user ON web_signins (username);
