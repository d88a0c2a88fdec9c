-- Cameras shown on the public live page (docs/live.md): a row means public.
CREATE TABLE live_public (
    station_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (station_id, camera)
);
