-- 0007: each user's create rate (a token bucket), kept in the store so
-- that it holds across servers.

CREATE TABLE create_rates (
    username TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL
);
