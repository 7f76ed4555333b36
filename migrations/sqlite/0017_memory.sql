-- The assistant's memory (issue 20): documents an operator adds (manuals, data sheets, notes).
-- Their text is kept here, the source of truth; the vectors made from it live in the memory's
-- store and are made again from this table when it changes.
CREATE TABLE memory_documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    format TEXT NOT NULL,           -- markdown, text, pdf
    printer_id TEXT,                -- about this printer only, if set
    material TEXT,                  -- about this material only, if set
    content TEXT NOT NULL,          -- the text (a PDF's, as extracted)
    bytes BIGINT NOT NULL,          -- the size of what was uploaded
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX memory_documents_updated ON memory_documents (updated_at);
