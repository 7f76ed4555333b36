-- Printers an admin manages from the hub (issue 16): each agent receives the whole list of
-- its managed printers, versioned, and answers which version it applied.
--
-- The secret (a Bambu access code, a Moonraker API key) is kept here because the hub must
-- send it to the agent; the API never returns it.
CREATE TABLE managed_printers (
    printer_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    name TEXT,
    model TEXT,
    -- `bambu` or `moonraker`.
    kind TEXT NOT NULL,
    -- Bambu: the printer's address and MQTT port.
    host TEXT,
    port BIGINT,
    -- Moonraker: its URL, and the web server's port for relative webcam URLs.
    url TEXT,
    web_port BIGINT,
    secret TEXT,
    -- 1: watch the printer's own camera.
    camera BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX managed_printers_agent ON managed_printers (agent_id);

-- Each agent's list version (bumped on every change) and what the agent last applied.
CREATE TABLE managed_versions (
    agent_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    applied_version BIGINT,
    applied_at BIGINT,
    -- JSON: [{"id": …, "error": … or null}] of the applied version.
    applied TEXT
);

-- Printers an agent heard announce themselves on its LAN, newest sighting kept.
CREATE TABLE discovered_printers (
    agent_id TEXT NOT NULL,
    -- A Bambu printer's serial, a Moonraker's URL.
    discovery_key TEXT NOT NULL,
    vendor TEXT NOT NULL,
    name TEXT,
    model TEXT,
    address TEXT NOT NULL,
    url TEXT,
    connection TEXT,
    bind_state TEXT,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, discovery_key)
);

-- The printers each agent announced in its latest hello: its own (agent.toml's) and the
-- managed ones it runs. Those not managed from the hub show as managed locally.
CREATE TABLE announced_printers (
    agent_id TEXT NOT NULL,
    printer_id TEXT NOT NULL,
    name TEXT,
    announced_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, printer_id)
);
