-- 0006: this deployment's id, made once with the database. Every server
-- sharing the database is one deployment; the modules record the id with
-- each VM they make, and the sweeper destroys only its deployment's VMs.

CREATE TABLE deployment (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id TEXT NOT NULL
);
INSERT INTO deployment (one, id)
VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 12));
