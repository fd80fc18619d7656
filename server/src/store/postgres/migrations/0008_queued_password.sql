-- 0008: the session user's password hash, kept while a create is QUEUED
-- (whichever server takes the create needs it; forgotten at its first
-- move). NULL: none kept (a warm pool's desktop, or moved on).

ALTER TABLE sessions ADD COLUMN password_hash TEXT;
