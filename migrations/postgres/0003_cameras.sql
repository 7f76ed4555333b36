-- Cameras: whole snapshots (images on disk under <data>/snapshots) and each camera's health.

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,            -- the agent's snapshot id, hex
    agent_id TEXT NOT NULL,
    printer_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    trigger TEXT NOT NULL,          -- job_started, first_layer_done, interval, layer, paused,
                                    -- failed, finished, requested
    layer BIGINT,                   -- for trigger = layer
    captured_at BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,             -- relative to the snapshot directory
    job_name TEXT,                  -- the job in progress (its job_started event)
    job_started_at BIGINT,
    event_id BIGINT                 -- the event that triggered it, if any
);
CREATE INDEX snapshots_printer_at ON snapshots (printer_id, captured_at);
CREATE INDEX snapshots_captured_at ON snapshots (captured_at);

CREATE TABLE cameras (
    printer_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,            -- idle, connecting, streaming, failed
    fps_milli BIGINT NOT NULL,
    last_frame_at BIGINT,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    frames_total BIGINT NOT NULL,
    last_error TEXT,
    live BIGINT NOT NULL,           -- 1 while the agent streams live view
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (printer_id, camera_id)
);
