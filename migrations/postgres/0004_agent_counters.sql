-- The agent's own counters from its newest AgentHealthV2 record (wire version 3), as JSON:
-- {"hub_reconnects", "hub_protocol_errors", "commands_refused",
--  "printers": [{"printer", "link_errors", "bad_payloads", "camera_errors"}]}.
-- NULL while the agent sends only the older AgentHealth.
ALTER TABLE agents ADD COLUMN counters TEXT;
