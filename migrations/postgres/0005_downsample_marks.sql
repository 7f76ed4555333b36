-- Incremental telemetry downsampling. Each sample remembers when the hub received it, and
-- each downsampling level remembers how far it got: the next run folds only the buckets that
-- gained samples since (late ones from an agent catching up included) and the buckets that
-- were still open last time.
ALTER TABLE telemetry ADD COLUMN received_at BIGINT;
UPDATE telemetry SET received_at = at;
CREATE INDEX telemetry_resolution_received ON telemetry (resolution, received_at);
CREATE INDEX telemetry_resolution_at ON telemetry (resolution, at);

-- source: the resolution folded from (0 raw, 60 one-minute buckets).
CREATE TABLE downsample_marks (
    source BIGINT PRIMARY KEY,
    -- Samples received before this (hub time, Unix ms) are folded.
    received_before BIGINT NOT NULL,
    -- Buckets starting at or after this were still open at the last run.
    open_from BIGINT NOT NULL
);
