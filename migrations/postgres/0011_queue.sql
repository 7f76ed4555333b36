-- The print queue (issue 17): jobs, each one print of a file's plate, with the history of
-- every change and who made it; and the plate confirmations a start needs.
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    batch TEXT NOT NULL,            -- the request that made it: copies share it
    copy BIGINT NOT NULL,           -- 1..=copies
    copies BIGINT NOT NULL,
    file_id TEXT NOT NULL,
    plate BIGINT NOT NULL,
    name TEXT NOT NULL,
    -- queued, assigned, transferring, uploading, starting, printing, finished, failed,
    -- cancelled
    state TEXT NOT NULL,
    held BIGINT NOT NULL,           -- 1: an operator holds it
    priority BIGINT NOT NULL,       -- higher first
    position BIGINT NOT NULL,       -- order within a priority
    deadline BIGINT,                -- Unix ms
    not_before BIGINT,              -- Unix ms
    needs_approval BIGINT NOT NULL, -- 1: an operator approves it before it runs
    approved_by TEXT,
    approved_at BIGINT,
    target_printer TEXT,            -- this printer only
    target_model TEXT,              -- any printer of this model
    nozzle DOUBLE PRECISION,                   -- millimetres; the file's when null
    needs TEXT NOT NULL,            -- per slot: material and colour, JSON
    tolerance DOUBLE PRECISION NOT NULL,       -- colour tolerance, CIE76 ΔE
    printer_id TEXT,                -- where it was assigned
    mapping TEXT,                   -- slot → tray, JSON
    reason TEXT,                    -- why it waits, or why it failed
    reason_code TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_printer ON jobs (printer_id);

CREATE TABLE job_history (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,            -- a user, or "dispatcher"
    detail TEXT
);
CREATE INDEX job_history_job ON job_history (job_id, id);

-- "Plate clear", one tap after each job: the person, and how far the hub held the printer's
-- agent's records then. A job end recorded after that seq needs a new confirmation.
CREATE TABLE plate_clearances (
    printer_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    through_seq BIGINT NOT NULL,
    confirmed_by TEXT NOT NULL,
    confirmed_at BIGINT NOT NULL
);
