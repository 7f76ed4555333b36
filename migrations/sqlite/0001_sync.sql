-- Agents, enrollment tokens, the ingest log and commands (the sync issue).
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT,
    hostname TEXT,
    software TEXT,
    enrolled_at BIGINT NOT NULL,
    cert_serial TEXT NOT NULL,
    cert_not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    acked_through BIGINT NOT NULL DEFAULT 0,
    last_seen_at BIGINT
);

CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    name TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT
);

-- Every record an agent synced, exactly once per (agent, seq).
CREATE TABLE records (
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    observed_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    printer_id TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (agent_id, seq)
);

CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    printer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    body BLOB NOT NULL,
    delivered_at BIGINT,
    outcome TEXT,
    outcome_at BIGINT
);
CREATE INDEX commands_open ON commands (agent_id, outcome_at);
