-- Several hub processes on one PostgreSQL as one hub (issue 21; see hub/src/cluster.rs).
-- On SQLite (one hub) these stay empty.

-- Every live update and every signal for an agent's connection, in commit order (rows are
-- inserted under one advisory lock): each replica reads it from where it was and delivers
-- it; the ids are the live updates' cursors. Kept an hour.
CREATE TABLE cluster_log (
    id BIGSERIAL PRIMARY KEY,
    origin TEXT NOT NULL,           -- the replica that wrote it (its scheduler holder name)
    at BIGINT NOT NULL,
    body TEXT NOT NULL              -- JSON: {"live": …} or {"signal": …}
);

-- The replicas, with a heartbeat: an agent connected to one whose heartbeat stopped is not.
CREATE TABLE cluster_replicas (
    name TEXT PRIMARY KEY,
    http_addr TEXT NOT NULL,
    sync_addr TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- Which replica each connected agent is connected to.
CREATE TABLE cluster_presence (
    agent_id TEXT PRIMARY KEY,
    replica TEXT NOT NULL,
    since BIGINT NOT NULL
);

-- The hub's CA, shared by every replica (agents trust one CA; enrollment tokens name it).
-- The first replica to start puts its own here; the others use it.
CREATE TABLE cluster_ca (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
