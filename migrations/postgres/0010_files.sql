-- Print files (issue 17): each file once, by the SHA-256 of its bytes, which is its id. The
-- bytes live on disk under <data_dir>/files/<first two hex digits>/<sha256>; this row says
-- what was read from them (printfile's PrintFile as JSON) and who uploaded them.
CREATE TABLE files (
    id TEXT PRIMARY KEY,            -- SHA-256 of the file, lowercase hex
    name TEXT NOT NULL,             -- the name it was first uploaded under
    size BIGINT NOT NULL,
    md5 TEXT NOT NULL,              -- of the whole file, lowercase hex
    kind TEXT NOT NULL,             -- gcode_3mf or gcode
    meta TEXT NOT NULL,             -- what was read from it, JSON
    uploaded_at BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL
);
CREATE INDEX files_uploaded_at ON files (uploaded_at);

-- Pictures read from a file (plates' and the file's own), in the order of meta's thumbnails.
CREATE TABLE file_thumbnails (
    file_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    mime TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (file_id, n)
);
