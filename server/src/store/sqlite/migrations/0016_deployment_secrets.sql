-- 0016: secrets every server of the deployment shares (the SSH key the
-- desktops trust), set by the first server that asks.

CREATE TABLE deployment_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
