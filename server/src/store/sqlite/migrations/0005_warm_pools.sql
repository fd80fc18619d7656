-- 0005: warm pools: the pool a desktop was built for, and when a create
-- claimed it.

ALTER TABLE sessions ADD COLUMN pool TEXT;
ALTER TABLE sessions ADD COLUMN claimed_ms INTEGER;
CREATE INDEX sessions_pool ON sessions (pool, state) WHERE pool IS NOT NULL;
