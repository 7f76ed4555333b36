-- How a job starts on a Bambu printer (issue 17, item 3): bed levelling first (1, the
-- default), flow calibration (0), a timelapse (0).
ALTER TABLE jobs ADD COLUMN bed_leveling BIGINT NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN flow_calibration BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN timelapse BIGINT NOT NULL DEFAULT 0;
