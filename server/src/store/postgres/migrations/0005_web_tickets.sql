-- 0005: the portal's gateway tickets (single-use, short-lived), in the
-- store so that any server redeems what another issued. The ticket itself
-- is a bearer secret: only its SHA-256 is kept.

CREATE TABLE web_tickets (
    hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    username TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX web_tickets_user ON web_tickets (username);
CREATE INDEX web_tickets_expires ON web_tickets (expires_ms);
