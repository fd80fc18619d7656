-- 0017: the cluster's nodes as the module's `inventory nodes` last reported
-- them (and whether an admin drained one), and where each session's VM is
-- placed, with what it reserves there and whether its clone is running.

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    used_memory_mb INTEGER NOT NULL,
    configured_memory_mb INTEGER NOT NULL,
    configured_cores INTEGER NOT NULL,
    templates TEXT NOT NULL,
    vms TEXT NOT NULL,
    listed INTEGER NOT NULL DEFAULT 1,
    drained INTEGER NOT NULL DEFAULT 0,
    seen_ms INTEGER NOT NULL,
    offline_since_ms INTEGER,
    updated_ms INTEGER NOT NULL
);

ALTER TABLE sessions ADD COLUMN node TEXT;
ALTER TABLE sessions ADD COLUMN cores INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN clone_started_ms INTEGER;
CREATE INDEX sessions_node ON sessions (node) WHERE node IS NOT NULL;
