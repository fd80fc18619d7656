-- 0020: organisations. The organisation whose quota a session counts
-- against (NULL: none), counted in the create's transaction; and the
-- organisation of an audit entry ('' : none), for its administrators.

ALTER TABLE sessions ADD COLUMN org TEXT;
CREATE INDEX sessions_org ON sessions (org, state) WHERE org IS NOT NULL;

ALTER TABLE audit ADD COLUMN org TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_org ON audit (org, time_ms, id) WHERE org != '';
