-- Stationwatch controller schema (PostgreSQL). Times are Unix milliseconds (BIGINT).
-- Keep in step with ../sqlite/0001_init.sql: the same tables, columns and indexes.

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'observer')),
    created_at BIGINT NOT NULL
);

-- Stations an observer may see.
CREATE TABLE grants (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    station_id TEXT NOT NULL,
    PRIMARY KEY (user_id, station_id)
);

-- Only SHA-256 hashes of session and API tokens are stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The latest known state of every station, written by whichever replica received it.
CREATE TABLE stations (
    id TEXT PRIMARY KEY,
    status_json TEXT,
    status_received_at BIGINT,
    health_json TEXT,
    health_at BIGINT,
    health_received_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX stations_updated ON stations (updated_at);

-- Compact figures of every health report, for the station page's chart.
CREATE TABLE health_history (
    station_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    figures TEXT NOT NULL,
    PRIMARY KEY (station_id, at)
);

-- Events are delivered at least once: (station, id) de-duplicates.
CREATE TABLE events (
    station_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    camera TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (station_id, event_id)
);
CREATE INDEX events_station_at ON events (station_id, at);

-- One open alert per (station, kind) at most, whichever replica opens it.
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    station_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (station_id, kind) WHERE closed_at IS NULL;
CREATE INDEX alerts_station ON alerts (station_id, opened_at);
CREATE INDEX alerts_open ON alerts (closed_at);

CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    station_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    ack_at BIGINT,
    ack_body TEXT
);
CREATE INDEX commands_station ON commands (station_id, issued_at);

-- The latest snapshot of every camera.
CREATE TABLE snapshots (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    jpeg BYTEA NOT NULL,
    PRIMARY KEY (station_id, camera)
);

CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    ok BIGINT NOT NULL -- 1 or 0 (sqlx Any cannot read SQLite booleans)
);
CREATE INDEX audit_at ON audit (at);
