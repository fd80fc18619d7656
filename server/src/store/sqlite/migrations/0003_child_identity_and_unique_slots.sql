-- 0003: the identity of a session's tool process; the live-slot index
-- made UNIQUE (concurrent writers cannot share a slot); an index by state.

ALTER TABLE sessions ADD COLUMN child_identity TEXT;
DROP INDEX sessions_live_slots;
CREATE UNIQUE INDEX sessions_live_slots ON sessions (slot) WHERE slot_released = 0;
CREATE INDEX sessions_state ON sessions (state);
