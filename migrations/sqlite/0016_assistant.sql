-- The assistant (issue 19): conversations and their messages, actions waiting for a person,
-- and what each model request cost. Usage is kept apart from conversations so that deleting
-- a conversation never gives back budget.
CREATE TABLE assistant_conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,            -- the user who talks in it; only they see it
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX assistant_conversations_owner ON assistant_conversations (owner, updated_at);

CREATE TABLE assistant_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES assistant_conversations (id) ON DELETE CASCADE,
    speaker TEXT NOT NULL,          -- system, user, assistant, tool
    content TEXT NOT NULL,
    tool_calls TEXT,                -- JSON array, for the assistant's calls
    tool_call_id TEXT,              -- for a tool's result
    tool_name TEXT,
    tier TEXT,                      -- which model answered
    why TEXT,                       -- why the router chose it
    created_at BIGINT NOT NULL
);
CREATE INDEX assistant_messages_conversation ON assistant_messages (conversation_id, id);

CREATE TABLE assistant_pending (
    id TEXT PRIMARY KEY,
    conversation_id TEXT,           -- null once the conversation is deleted
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,        -- JSON
    summary TEXT NOT NULL,
    digest TEXT NOT NULL,           -- SHA-256 of the canonical action
    requested_by TEXT NOT NULL,
    needed_role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,            -- pending, confirmed, rejected
    decided_by TEXT,
    decided_at BIGINT,
    result TEXT,                    -- JSON: what running it gave
    error TEXT
);
CREATE INDEX assistant_pending_state ON assistant_pending (state, created_at);

CREATE TABLE assistant_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    tier TEXT NOT NULL,
    paid BIGINT NOT NULL,           -- 1: counts against the monthly budget
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost REAL NOT NULL,
    ok BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL
);
CREATE INDEX assistant_usage_at ON assistant_usage (at);
