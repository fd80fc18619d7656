-- 0009: each session's Terraform variables and state, so that any server
-- sharing the store can destroy its VM.

ALTER TABLE sessions ADD COLUMN tf_vars BLOB;
ALTER TABLE sessions ADD COLUMN tf_state BLOB;
