-- 0022: desktops that keep their disk. A kept disk (`inventory snapshot`,
-- named by the id of the session whose disk it was), for its user's next
-- create of the template; and the kept disk a session is restored from
-- (NULL: a fresh clone). A disk is restored by one live session at a time.

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    template TEXT NOT NULL,
    size TEXT NOT NULL,
    org TEXT,
    vm_name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    size_gb INTEGER NOT NULL
);
CREATE INDEX snapshots_user ON snapshots (username, template, created_ms);

ALTER TABLE sessions ADD COLUMN restore_from TEXT;
