-- 0008: the portal's sign-ins (the cookie id's hash, never the id).

CREATE TABLE web_signins (
    id_hash      TEXT PRIMARY KEY,
    user         TEXT NOT NULL,
    admin        INTEGER NOT NULL,
    csrf         TEXT NOT NULL,
    key          TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    checked_ms   INTEGER NOT NULL
);
CREATE INDEX web_signins_user ON web_signins (user);
