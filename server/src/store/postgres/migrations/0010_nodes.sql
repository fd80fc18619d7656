-- 0010: the cluster's nodes as the module's `inventory nodes` last reported
-- them (and whether an admin drained one), and where each session's VM is
-- placed, with what it reserves there and whether its clone is running.

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    cpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    used_memory_mb BIGINT NOT NULL,
    configured_memory_mb BIGINT NOT NULL,
    configured_cores BIGINT NOT NULL,
    templates TEXT NOT NULL,
    vms TEXT NOT NULL,
    listed BOOLEAN NOT NULL DEFAULT TRUE,
    drained BOOLEAN NOT NULL DEFAULT FALSE,
    seen_ms BIGINT NOT NULL,
    offline_since_ms BIGINT,
    updated_ms BIGINT NOT NULL
);

ALTER TABLE sessions ADD COLUMN node TEXT;
ALTER TABLE sessions ADD COLUMN cores BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN memory_mb BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN clone_started_ms BIGINT;
CREATE INDEX sessions_node ON sessions (node) WHERE node IS NOT NULL;
