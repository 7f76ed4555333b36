-- The hub's read model (derived from records at ingest), users, tokens, sessions, audit.

CREATE TABLE printers (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    name TEXT,
    model TEXT,
    vendor TEXT,
    state TEXT,            -- the normalised state as JSON (the printer-link field names)
    state_at BIGINT,       -- when the agent observed it
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    printer_id TEXT,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    data TEXT NOT NULL,    -- the event as JSON
    UNIQUE (agent_id, seq)
);
CREATE INDEX events_printer_at ON events (printer_id, at);
CREATE INDEX events_kind_at ON events (kind, at);
CREATE INDEX events_at ON events (at);

-- resolution: 0 raw samples, 60 one-minute buckets, 900 fifteen-minute buckets (seconds).
CREATE TABLE telemetry (
    printer_id TEXT NOT NULL,
    resolution INTEGER NOT NULL,
    at BIGINT NOT NULL,
    state TEXT,
    progress_percent INTEGER,
    layer INTEGER,
    nozzle_temp_c REAL,
    bed_temp_c REAL,
    chamber_temp_c REAL,
    PRIMARY KEY (printer_id, resolution, at)
);

ALTER TABLE agents ADD COLUMN outbox_records BIGINT;
ALTER TABLE agents ADD COLUMN outbox_bytes BIGINT;
ALTER TABLE agents ADD COLUMN drops TEXT;
ALTER TABLE agents ADD COLUMN disk_free_bytes BIGINT;

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    user_name TEXT NOT NULL,
    name TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
