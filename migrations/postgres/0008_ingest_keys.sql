-- Fewer indexes written per ingested event (issue 15: catch-up speed). The event log had
-- three secondary indexes besides (agent_id, seq), and only one query shape uses any: a
-- printer's latest event of a kind at or before a time (linking snapshots to their event and
-- job). The API's event list walks `id` (its filters are optional, so no index serves them).
-- One index fits that shape exactly. (SQLite's migration also rebuilds `records` WITHOUT
-- ROWID; a PostgreSQL table has no rowid b-tree to save.)
DROP INDEX events_printer_at;
DROP INDEX events_kind_at;
DROP INDEX events_at;
CREATE INDEX events_printer_kind_at ON events (printer_id, kind, at);
