-- 0004: webhook deliveries to make, written in the transaction of the
-- event they tell (one row per webhook that wants it), taken by a server
-- (claimed_by until claimed_until_ms) and deleted once settled.

CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL,
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until_ms BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (claimed_until_ms, created_ms);
