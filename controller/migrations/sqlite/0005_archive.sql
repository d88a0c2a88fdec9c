-- Archive (issue 14): what the central archive holds of every camera's manifest and segments.
-- Keep in step with ../postgres/0003_archive.sql.

-- The contiguous range of a camera's manifest the archive holds (chain- and signature-checked).
CREATE TABLE archive_manifests (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    first_prev TEXT NOT NULL,      -- prev of the first line (hex)
    last_seq INTEGER NOT NULL,
    last_hash TEXT NOT NULL,       -- SHA-256 of the last line (hex)
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (station_id, camera)
);

-- One row per archived manifest line. Segments carry their upload state:
-- pending (listed, bytes not all here), archived (bytes matched the signed entry), refused.
CREATE TABLE archive_entries (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,            -- the exact signed line, without its newline
    hash TEXT NOT NULL,            -- SHA-256 of line (hex)
    kind TEXT NOT NULL,            -- segment, gap, deleted, start, stop, open, hold, release
    start_ms INTEGER,              -- segments and gaps: the span on the recording timeline
    end_ms INTEGER,
    file TEXT,                     -- segments: file name, size and SHA-256 of the signed entry
    size INTEGER,
    sha256 TEXT,
    state TEXT,                    -- segments: pending, archived, refused; NULL otherwise
    reason TEXT,                   -- refused: why
    archived_at INTEGER,
    received_at INTEGER NOT NULL,  -- when the line was archived
    PRIMARY KEY (station_id, camera, seq)
);
CREATE INDEX archive_entries_time ON archive_entries (station_id, camera, start_ms);
CREATE INDEX archive_entries_state ON archive_entries (station_id, state);

-- Everything the archive refused: manifest batches and segments, with where the bytes were kept.
CREATE TABLE archive_refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    seq INTEGER,                   -- the segment's entry, or the first line of a refused batch
    what TEXT NOT NULL,            -- manifest or segment
    reason TEXT NOT NULL,
    object_key TEXT,               -- quarantined bytes, if kept
    at INTEGER NOT NULL
);
CREATE INDEX archive_refusals_station ON archive_refusals (station_id, at);
