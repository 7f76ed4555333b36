-- Fewer b-trees written per ingested record (issue 15: catch-up speed).
--
-- The ingest log is keyed by (agent_id, seq) and read only by that key: as a rowid table it
-- was two b-trees (the table and its primary-key index), each written on every insert.
-- WITHOUT ROWID stores the rows in the primary key's own b-tree.
CREATE TABLE records_by_key (
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    observed_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    printer_id TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (agent_id, seq)
) WITHOUT ROWID;
INSERT INTO records_by_key (agent_id, seq, observed_at, received_at, kind, printer_id, body)
    SELECT agent_id, seq, observed_at, received_at, kind, printer_id, body FROM records;
DROP TABLE records;
ALTER TABLE records_by_key RENAME TO records;

-- The event log had three secondary indexes besides (agent_id, seq), and only one query
-- shape uses any: a printer's latest event of a kind at or before a time (linking
-- snapshots to their event and job). The API's event list walks `id` (its filters are
-- optional, so no index serves them). One index fits that shape exactly.
DROP INDEX events_printer_at;
DROP INDEX events_kind_at;
DROP INDEX events_at;
CREATE INDEX events_printer_kind_at ON events (printer_id, kind, at);
