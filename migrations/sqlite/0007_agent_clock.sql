-- The agent's clock against the hub's, from its health records (wire version 4): the hub's
-- clock minus the agent's, give or take the uncertainty, measured at the agent's last
-- session start (the agent's clock). NULL until an agent of version 4 reports it.
ALTER TABLE agents ADD COLUMN clock_offset_ms BIGINT;
ALTER TABLE agents ADD COLUMN clock_uncertainty_ms BIGINT;
ALTER TABLE agents ADD COLUMN clock_measured_at BIGINT;

-- The printer's state is the one of its owner's record with the highest seq: the agent's
-- order, not its clock, which can step back (a Pi that rebooted hours behind).
ALTER TABLE printers ADD COLUMN state_seq BIGINT;
