-- Failed password checks shared by hub replicas on one PostgreSQL (hub/src/api/limiter.rs):
-- the in-memory limiter's GCRA, one row per user name or client address, so a flood spread
-- over the replicas behind a load balancer gets one allowance, not one per replica. Rows
-- whose time has passed are pruned by the certificate sweep. On SQLite (one hub) it stays
-- empty: the in-memory limiter is exact there.
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,               -- 'name:<user>' or 'address:<IPv4, or IPv6 /64>'
    tat BIGINT NOT NULL,                -- the theoretical arrival time, Unix ms (database clock)
    reported INTEGER NOT NULL DEFAULT 0 -- 1: a refusal was audited since the last failure
);
