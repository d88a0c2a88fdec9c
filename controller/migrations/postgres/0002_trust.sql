-- Trust (issue 12): the stations' registered keys and the manifest heads the controller witnessed.
-- Keep in step with ../sqlite/0002_trust.sql.

-- Every key ever registered for a station; at most one in force (retired_at IS NULL).
-- Rotation retires the old row (retired_at) and inserts the new one, in one transaction.
CREATE TABLE station_keys (
    id BIGSERIAL PRIMARY KEY,
    station_id TEXT NOT NULL,
    public_key TEXT NOT NULL,      -- 64 lowercase hex characters
    fingerprint TEXT NOT NULL,     -- xxxx:xxxx:xxxx:xxxx
    registered_at BIGINT NOT NULL,
    registered_by TEXT NOT NULL,
    retired_at BIGINT
);
CREATE UNIQUE INDEX station_keys_one_current ON station_keys (station_id) WHERE retired_at IS NULL;
-- Rotation retires the old key at the new key's registered_at: one index finds both.
CREATE INDEX station_keys_registered ON station_keys (registered_at);

-- One row per manifest head a station reported (only when a camera's head changed).
CREATE TABLE witnessed_heads (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    next_seq BIGINT NOT NULL,
    prev TEXT NOT NULL,             -- SHA-256 hex of the line of entry next_seq - 1
    agent_at BIGINT NOT NULL,      -- the station's clock
    received_at BIGINT NOT NULL,   -- the controller's clock
    key_fingerprint TEXT,           -- what the report said its key was
    tsa_json TEXT,                  -- RFC 3161 token (protocol TsaToken as JSON), when stamped
    PRIMARY KEY (station_id, camera, next_seq)
);
CREATE INDEX witnessed_heads_received ON witnessed_heads (received_at);
CREATE INDEX witnessed_heads_station ON witnessed_heads (station_id, received_at);

-- The highest head of every camera: what a controller loads at start (the history above grows by
-- ~one row per camera per minute; reading its maximum per camera at start would scan it all).
CREATE TABLE witnessed_latest (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    next_seq BIGINT NOT NULL,
    prev TEXT NOT NULL,
    agent_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    key_fingerprint TEXT,
    PRIMARY KEY (station_id, camera)
);
