-- 0007: the SHA-256 of the xrdp certificate the server made for the VM,
-- the only one the portal's gateway accepts.

ALTER TABLE sessions ADD COLUMN rdp_cert_sha256 TEXT NOT NULL DEFAULT '';
