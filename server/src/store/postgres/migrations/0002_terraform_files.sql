-- 0002: each session's Terraform variables and state, so that any server
-- can destroy its VM.

ALTER TABLE sessions ADD COLUMN tf_vars BYTEA;
ALTER TABLE sessions ADD COLUMN tf_state BYTEA;
