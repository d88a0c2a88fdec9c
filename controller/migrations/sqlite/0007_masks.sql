-- Privacy masks of cameras (issue 16): polygons, in coordinates relative to the picture (0..1),
-- blanked in every picture shown to people without full rights (observers' snapshots).
-- Keep in step with ../postgres/0007_masks.sql.
CREATE TABLE camera_masks (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    masks TEXT NOT NULL,             -- JSON array of polygons, each an array of [x, y]
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (station_id, camera)
);
