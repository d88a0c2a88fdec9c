-- One-time enrollment codes (issue 18): an admin creates one for a station id; the device
-- redeems it once, before it expires, to register its key and receive its broker account.
-- Only the code's SHA-256 is kept. Keep in step with ../sqlite/0009_enrollments.sql.
CREATE TABLE enrollments (
    code_hash TEXT PRIMARY KEY,
    station_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_key TEXT                    -- fingerprint of the key registered with it
);
