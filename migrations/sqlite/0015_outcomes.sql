-- Outcomes (issue 18): every print that ends, whether the queue sent it or not, with what
-- it used and cost, the reason it failed (inferred, then an operator's review) and scores.
-- A print in progress is followed in `prints_in_progress` (one per printer) from its start
-- to its end, gathering what the printer said meanwhile (pauses, HMS, errors, messages).
CREATE TABLE prints_in_progress (
    printer_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    start_seq BIGINT NOT NULL,
    started_at BIGINT,              -- null: the agent never saw it start (it came up mid-print)
    name TEXT,
    evidence TEXT NOT NULL          -- JSON
);

CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    printer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    end_seq BIGINT NOT NULL,        -- the agent's record of the end: once per (agent, seq)
    job_id BIGINT,                  -- the queue's job, when the queue sent it
    name TEXT,
    result TEXT NOT NULL,           -- success, failed, cancelled
    reason TEXT,                    -- inferred from the printer's words; none for a success
    reason_rule TEXT,               -- the table row that decided it
    evidence TEXT NOT NULL,         -- JSON: what the printer said
    started_at BIGINT,
    ended_at BIGINT NOT NULL,
    duration_s BIGINT,
    progress REAL,                  -- 0..1 of the print made
    material TEXT,                  -- the main material
    requested_by TEXT,              -- who queued it
    filament_g REAL NOT NULL,
    filament_cost REAL,
    energy_kwh REAL,
    energy_cost REAL,
    review_reason TEXT,             -- an operator's: confirmed or corrected
    quality BIGINT,                 -- 0..100, exactly as given
    aspects TEXT,                   -- JSON object: aspect → 0..100
    notes TEXT,
    reviewed_by TEXT,
    reviewed_at BIGINT
);
CREATE UNIQUE INDEX outcomes_end ON outcomes (agent_id, end_seq);
CREATE INDEX outcomes_printer ON outcomes (printer_id, ended_at);
CREATE INDEX outcomes_ended ON outcomes (ended_at);
CREATE INDEX outcomes_job ON outcomes (job_id);

-- What an outcome's print used, per slot, and from which spool (deducted then, once).
CREATE TABLE outcome_usage (
    outcome_id BIGINT NOT NULL,
    unit BIGINT NOT NULL,           -- -1: outside any unit
    slot BIGINT NOT NULL,
    spool_id BIGINT,
    material TEXT,
    color TEXT,
    grams REAL NOT NULL,
    length_mm REAL,
    cost REAL,
    deducted BIGINT NOT NULL,       -- 0: a Spoolman client of the printer reports it
    PRIMARY KEY (outcome_id, unit, slot)
);
CREATE INDEX outcome_usage_spool ON outcome_usage (spool_id);
