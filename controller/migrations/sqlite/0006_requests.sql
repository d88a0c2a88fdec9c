-- Requests for recordings (issue 15): a case an observer (or any user) files for a window of a
-- station's cameras, decided by staff, collected from the station through the archive.
-- Keep in step with ../postgres/0006_requests.sql.
CREATE TABLE requests (
    id TEXT PRIMARY KEY,             -- 'r' + 32 hex digits: not guessable
    station_id TEXT NOT NULL,
    cameras TEXT NOT NULL,           -- JSON array of camera ids; [] = every camera
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,            -- the complaint or legal basis (required)
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL,            -- submitted, refused, collecting, ready, ready_with_gaps, failed
    decided_by TEXT,
    decided_at INTEGER,
    decision TEXT,                   -- the reason given with a refusal (or approval note)
    command_id TEXT,                 -- the upload command sent on approval
    progress TEXT,                   -- JSON: what the station reports of the upload
    gaps TEXT,                       -- JSON array: every gap of a ready window, with its reason
    history TEXT NOT NULL,           -- JSON array: every transition (status, at, by, note)
    ready_at INTEGER,
    deadline_at INTEGER,             -- collecting fails after this
    hold_until INTEGER,              -- the archive keeps the window at least until then
    updated_at INTEGER NOT NULL
);
CREATE INDEX requests_open ON requests (status, requested_at);
CREATE INDEX requests_requester ON requests (requested_by, requested_at);
CREATE INDEX requests_station ON requests (station_id, from_ms);
