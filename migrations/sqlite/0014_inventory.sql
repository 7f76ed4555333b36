-- Inventory (issue 18), Spoolman's data model: vendors, filaments, spools, the extra fields
-- people define and the settings Spoolman's clients read; the clients' tokens; which spool
-- is in which printer's slot. Times are Unix ms; extra values are JSON texts (Spoolman's
-- convention), the whole object stored as JSON.
CREATE TABLE vendors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    registered BIGINT NOT NULL,
    name TEXT NOT NULL,
    comment TEXT,
    empty_spool_weight REAL,
    external_id TEXT,
    extra TEXT NOT NULL
);

CREATE TABLE filaments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    registered BIGINT NOT NULL,
    name TEXT,
    vendor_id BIGINT,
    material TEXT,
    price REAL,
    density REAL NOT NULL,          -- g/cm³
    diameter REAL NOT NULL,         -- mm
    weight REAL,                    -- net filament of a full spool, g
    spool_weight REAL,              -- the empty spool, g
    article_number TEXT,
    comment TEXT,
    settings_extruder_temp BIGINT,
    settings_bed_temp BIGINT,
    color_hex TEXT,
    multi_color_hexes TEXT,
    multi_color_direction TEXT,
    external_id TEXT,
    extra TEXT NOT NULL
);
CREATE INDEX filaments_vendor ON filaments (vendor_id);

CREATE TABLE spools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    registered BIGINT NOT NULL,
    first_used BIGINT,
    last_used BIGINT,
    filament_id BIGINT NOT NULL,
    price REAL,
    initial_weight REAL,
    spool_weight REAL,
    used_weight REAL NOT NULL,
    location TEXT,
    lot_nr TEXT,
    comment TEXT,
    archived BIGINT NOT NULL,
    extra TEXT NOT NULL,
    rfid TEXT                       -- Bambu's tray_uuid: the spool's RFID identity
);
CREATE INDEX spools_filament ON spools (filament_id);
CREATE UNIQUE INDEX spools_rfid ON spools (rfid);

-- Extra fields' definitions, per entity (vendor, filament, spool).
CREATE TABLE inventory_fields (
    entity_type TEXT NOT NULL,
    key TEXT NOT NULL,
    definition TEXT NOT NULL,       -- JSON, as Spoolman's API returns it
    PRIMARY KEY (entity_type, key)
);

CREATE TABLE inventory_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL             -- JSON text
);

-- Spoolman clients (Moonraker, OctoPrint, Home Assistant): each a revocable token that lives
-- in the base URL it is configured with. Only the token's SHA-256 is kept.
CREATE TABLE spoolman_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    printer_id TEXT,                -- the printer whose usage it reports (Moonraker's own)
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- Which spool is in which of a printer's slots (unit -1: outside any unit), set by a person
-- or by an RFID tag the printer read.
CREATE TABLE spool_slots (
    printer_id TEXT NOT NULL,
    unit BIGINT NOT NULL,
    slot BIGINT NOT NULL,
    spool_id BIGINT NOT NULL,
    assigned_by TEXT NOT NULL,
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (printer_id, unit, slot)
);
