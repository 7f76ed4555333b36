-- The scheduler (issue 21): jobs, and one row per occurrence run. Every replica of the hub
-- reads the jobs and claims an occurrence by inserting its run; the primary key decides
-- between replicas racing, the lease (on the database's clock) says how long the holder
-- may take, and the fence (larger for every claim and takeover) is checked by every side
-- effect in its own transaction. See hub/src/scheduler/ and docs/research/replicas.md.
CREATE TABLE scheduler_jobs (
    name TEXT PRIMARY KEY,
    action TEXT NOT NULL,           -- what it runs (hub/src/scheduler/jobs.rs)
    params TEXT NOT NULL,           -- the action's parameters, JSON
    description TEXT NOT NULL,
    cron TEXT,                      -- exactly one of cron, every_ms, at_ms is set
    every_ms BIGINT,
    at_ms BIGINT,
    time_zone TEXT NOT NULL,        -- IANA name; cron's wall clock is read in it
    misfire TEXT NOT NULL,          -- run_latest, run_all, skip
    lease_ms BIGINT NOT NULL,
    paused INTEGER NOT NULL,
    builtin INTEGER NOT NULL,       -- made by the hub; its schedule is the configuration's
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_occurrence BIGINT          -- the newest scheduled occurrence claimed
);

CREATE TABLE scheduler_runs (
    job TEXT NOT NULL REFERENCES scheduler_jobs (name) ON DELETE CASCADE,
    occurrence BIGINT NOT NULL,     -- when it was due (Unix ms); a manual run's request time
    manual INTEGER NOT NULL,        -- 1: triggered by a person, not by the schedule
    triggered_by TEXT,              -- who triggered it by hand
    holder TEXT NOT NULL,           -- the replica running it ('' while a manual run waits)
    fence BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    state TEXT NOT NULL,            -- running, succeeded, failed
    attempts INTEGER NOT NULL,      -- 1 + takeovers
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    result TEXT,                    -- what it did, or why it failed
    PRIMARY KEY (job, occurrence, manual)
);
CREATE INDEX scheduler_runs_open ON scheduler_runs (state, lease_until);
CREATE INDEX scheduler_runs_started ON scheduler_runs (started_at);

CREATE SEQUENCE scheduler_fences;

-- What the `mark` action writes, in the fenced transaction that ends its run: one row per
-- run, so a duplicate or a missed occurrence shows in the side effect itself.
CREATE TABLE scheduler_marks (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    occurrence BIGINT NOT NULL,
    holder TEXT NOT NULL,
    fence BIGINT NOT NULL,
    written_at BIGINT NOT NULL
);
CREATE INDEX scheduler_marks_job ON scheduler_marks (job, occurrence);

-- The daily health report.
CREATE TABLE health_reports (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    occurrence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    report TEXT NOT NULL,           -- JSON
    UNIQUE (job, occurrence)
);
