-- Each printer belongs to one agent. The first agent to announce a printer owns it; an admin
-- approves that first claim before the printer takes commands (or the enrollment token that
-- named the printer approved it in advance). A later claim by another agent is refused and
-- kept here for admins to see; moving a printer to another agent is an admin's action.
ALTER TABLE printers ADD COLUMN approved_at BIGINT;
-- Printers the hub already knows were in use before ownership was checked: approved.
UPDATE printers SET approved_at = updated_at;

-- Serials an enrollment token approves in advance, space-separated: the agent that redeemed
-- the token (`used_by`) owns them, approved, when it first announces them.
ALTER TABLE enrollment_tokens ADD COLUMN printers TEXT;

-- Claims refused because another agent owns the printer.
CREATE TABLE printer_claims (
    printer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    -- Records about the printer from this agent that were kept but not shown or used.
    refused_records BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (printer_id, agent_id)
);
