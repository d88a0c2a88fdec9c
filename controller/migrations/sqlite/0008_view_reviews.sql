-- Decisions on cameras' views (issue 16): an operator approves what a camera shows (the
-- snapshot they saw is kept as the reference picture), refuses it with a reason the
-- technician sees, or resets it. The newest row of a camera is its current decision; the
-- rows before it are the history. Keep in step with ../postgres/0008_view_reviews.sql.
CREATE TABLE view_reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('approved', 'refused', 'reset')),
    reason TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    decided_at INTEGER NOT NULL,
    snapshot BLOB,                  -- the JPEG the operator saw (approvals and refusals)
    snapshot_at INTEGER,                -- when the controller received it
    command_id TEXT                  -- the set_view command that carried it to the station
);
CREATE INDEX view_reviews_camera ON view_reviews (station_id, camera, id);
