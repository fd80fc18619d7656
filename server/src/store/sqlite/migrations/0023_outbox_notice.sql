-- 0023: a webhook delivery may tell of no session (a scheduled create
-- refused): its notice is kept whole (session_id is empty, seq 0).

ALTER TABLE webhook_outbox ADD COLUMN notice TEXT;
