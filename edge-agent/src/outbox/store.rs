//! The SQLite side of the outbox: schema, opening (and moving a corrupt file aside), the
//! `meta` counters, and the statements that insert, evict and delete records.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use proto::{DropClass, DropReason, Record, RecordBody, Seq, UnixMillis};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};

use super::policy::{
    CLASSES, Capacity, DropTable, PerClass, REASONS, class_from_index, class_index, reason_index,
};

/// The `meta` key `schema_version` holds this; a file with a newer one is refused.
pub(super) const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (
        seq INTEGER PRIMARY KEY,
        class INTEGER NOT NULL,
        observed_at INTEGER,
        body BLOB NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS records_class_seq ON records (class, seq);
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS commands (
        id BLOB PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL,
        outcome BLOB
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS job_ends (
        printer TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        seen INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS open_jobs (
        printer TEXT PRIMARY KEY NOT NULL,
        name TEXT
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);
";

/// Everything `meta` holds besides the schema version, mirrored in memory. Always changed
/// in the same transaction as the rows it describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Counters {
    /// The highest seq ever issued and committed (`durable_through`).
    pub last_seq: u64,
    /// The highest seq the hub acknowledged; every record at or below it is deleted.
    pub acked_through: u64,
    pub records: PerClass<u64>,
    /// Encoded body bytes per class.
    pub bytes: PerClass<u64>,
    /// Drops not yet reported to the hub.
    pub drops: DropTable,
    /// Drops since the file was created.
    pub drops_total: DropTable,
}

impl Counters {
    pub fn count_drop(&mut self, class: DropClass, reason: DropReason, count: u64) {
        let (class, reason) = (class_index(class), reason_index(reason));
        self.drops[class][reason] += count;
        self.drops_total[class][reason] += count;
    }

    /// Forgets one stored row of `class` and `len` bytes.
    pub fn remove(&mut self, class: DropClass, records: u64, len: u64) {
        let class = class_index(class);
        self.records[class] = self.records[class].saturating_sub(records);
        self.bytes[class] = self.bytes[class].saturating_sub(len);
    }

    fn entries(&self) -> Vec<(String, u64)> {
        let mut entries = vec![
            ("last_seq".to_owned(), self.last_seq),
            ("acked_through".to_owned(), self.acked_through),
        ];
        for class in CLASSES {
            let (name, index) = (class_name(class), class_index(class));
            entries.push((format!("records.{name}"), self.records[index]));
            entries.push((format!("bytes.{name}"), self.bytes[index]));
            for reason in REASONS {
                let (reason_name, reason) = (reason_name(reason), reason_index(reason));
                entries.push((format!("drops.{name}.{reason_name}"), self.drops[index][reason]));
                entries.push((
                    format!("drops_total.{name}.{reason_name}"),
                    self.drops_total[index][reason],
                ));
            }
        }
        entries
    }

    fn from_meta(meta: &HashMap<String, i64>) -> Counters {
        let mut counters = Counters::default();
        let template = counters.entries();
        let mut values = template.iter().map(|(key, _)| meta.get(key).map_or(0, |&v| to_u64(v)));
        // Same order as `entries`.
        let mut next = || values.next().unwrap_or(0);
        counters.last_seq = next();
        counters.acked_through = next();
        for class in CLASSES {
            let index = class_index(class);
            counters.records[index] = next();
            counters.bytes[index] = next();
            for reason in REASONS {
                counters.drops[index][reason_index(reason)] = next();
                counters.drops_total[index][reason_index(reason)] = next();
            }
        }
        counters
    }

    /// Writes the keys whose value differs from `old`.
    pub fn save(&self, tx: &Transaction<'_>, old: &Counters) -> rusqlite::Result<()> {
        let mut statement =
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
        for ((key, new), (_, old)) in self.entries().into_iter().zip(old.entries()) {
            if new != old {
                statement.execute(params![key, to_i64(new)])?;
            }
        }
        Ok(())
    }
}

fn class_name(class: DropClass) -> &'static str {
    match class {
        DropClass::Telemetry => "telemetry",
        DropClass::Event => "event",
        DropClass::Snapshot => "snapshot",
        DropClass::Health => "health",
    }
}

fn reason_name(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Capacity => "capacity",
        DropReason::Corrupt => "corrupt",
    }
}

/// What [`open`] found.
#[derive(Debug)]
pub(super) struct Opened {
    pub connection: Connection,
    pub counters: Counters,
    pub moved_aside: Option<PathBuf>,
}

/// Why [`open`] failed.
#[derive(Debug)]
pub(super) enum OpenError {
    Directory(io::Error),
    MoveAside(io::Error),
    Schema(i64),
    Sqlite(rusqlite::Error),
}

/// Opens or creates the database at `path`; a file SQLite calls corrupt or not a database
/// is renamed to `<name>.corrupt-<unix_ms>` (with its `-wal` and `-shm`) and replaced.
pub(super) fn open(path: &Path) -> Result<Opened, OpenError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(OpenError::Directory)?;
    }
    match open_existing(path) {
        Ok((connection, counters)) => Ok(Opened { connection, counters, moved_aside: None }),
        Err(OpenError::Sqlite(error)) if is_corruption(&error) => {
            let moved_to = move_aside(path).map_err(OpenError::MoveAside)?;
            tracing::error!(
                path = %path.display(), moved_to = %moved_to.display(), %error,
                "Outbox database is unreadable; moved it aside and started a fresh one."
            );
            let (connection, counters) = open_existing(path)?;
            Ok(Opened { connection, counters, moved_aside: Some(moved_to) })
        }
        Err(error) => Err(error),
    }
}

fn open_existing(path: &Path) -> Result<(Connection, Counters), OpenError> {
    let mut connection = Connection::open(path).map_err(OpenError::Sqlite)?;
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(OpenError::Sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "Outbox could not switch to WAL.");
    }
    connection
        // A page cache of 512 KiB rather than SQLite's 2 MiB: the outbox is written and read
        // in order, and the cache a drain fills stays allocated after it (a Pi's budget).
        .execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 33554432; \
             PRAGMA cache_size = -512;",
        )
        .map_err(OpenError::Sqlite)?;
    let tx = connection.transaction().map_err(OpenError::Sqlite)?;
    tx.execute_batch(SCHEMA).map_err(OpenError::Sqlite)?;
    let meta = {
        let mut statement = tx.prepare("SELECT key, value FROM meta").map_err(OpenError::Sqlite)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
            .map_err(OpenError::Sqlite)?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>().map_err(OpenError::Sqlite)?
    };
    let version = meta.get("schema_version").copied().unwrap_or(SCHEMA_VERSION);
    if version != SCHEMA_VERSION {
        return Err(OpenError::Schema(version));
    }
    let mut counters = Counters::from_meta(&meta);
    // A primary-key lookup, not a scan: seqs must stay ahead of every stored row even if
    // `meta` were ever behind.
    let max_seq: Option<i64> = tx
        .query_row("SELECT max(seq) FROM records", [], |row| row.get(0))
        .map_err(OpenError::Sqlite)?;
    if let Some(max_seq) = max_seq.map(to_u64).filter(|&max| max > counters.last_seq) {
        tracing::warn!(path = %path.display(), max_seq, last_seq = counters.last_seq,
            "Outbox meta was behind its records; advanced last_seq.");
        let old = counters.clone();
        counters.last_seq = max_seq;
        counters.save(&tx, &old).map_err(OpenError::Sqlite)?;
    }
    tx.commit().map_err(OpenError::Sqlite)?;
    Ok((connection, counters))
}

fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = UnixMillis::now().0;
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let moved_to = with_suffix(&format!(".corrupt-{stamp}"));
    std::fs::rename(path, &moved_to)?;
    for companion in ["-wal", "-shm"] {
        let target = with_suffix(&format!(".corrupt-{stamp}{companion}"));
        match std::fs::rename(with_suffix(companion), target) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(moved_to)
}

pub(super) fn is_corruption(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

pub(super) fn is_full(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

/// What an eviction removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Evicted {
    pub records: u64,
    pub bytes: u64,
}

/// Deletes the oldest records of `class` until at least `at_least` bytes are freed (or the
/// class is empty), and counts them as capacity drops.
pub(super) fn evict_oldest(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    class: DropClass,
    at_least: u64,
) -> rusqlite::Result<Evicted> {
    const CHUNK: i64 = 512;
    let class_number = to_i64(class_index(class) as u64);
    let mut evicted = Evicted::default();
    let mut through: Option<i64> = None;
    let mut select = tx.prepare_cached(
        "SELECT seq, length(body) FROM records WHERE class = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    'chunks: loop {
        let mut rows = select.query(params![class_number, through.unwrap_or(i64::MIN), CHUNK])?;
        let mut n_rows = 0;
        while let Some(row) = rows.next()? {
            n_rows += 1;
            through = Some(row.get(0)?);
            evicted.records += 1;
            evicted.bytes += to_u64(row.get(1)?);
            if evicted.bytes >= at_least {
                break 'chunks;
            }
        }
        if n_rows < CHUNK {
            break;
        }
    }
    if let Some(through) = through {
        tx.prepare_cached("DELETE FROM records WHERE class = ?1 AND seq <= ?2")?
            .execute(params![class_number, through])?;
    }
    counters.remove(class, evicted.records, evicted.bytes);
    counters.count_drop(class, DropReason::Capacity, evicted.records);
    Ok(evicted)
}

/// Applies `capacity` to the stored records, oldest first per [`Capacity::next_eviction`].
pub(super) fn enforce_capacity(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    capacity: Capacity,
) -> rusqlite::Result<()> {
    while let Some(eviction) = capacity.next_eviction(&counters.bytes) {
        let evicted = evict_oldest(tx, counters, eviction.class, eviction.bytes)?;
        if evicted.records == 0 {
            // The counters claimed bytes the table does not hold; trust the table.
            tracing::warn!(class = ?eviction.class, "Outbox byte counter was off; reset it.");
            let index = class_index(eviction.class);
            counters.records[index] = 0;
            counters.bytes[index] = 0;
        }
    }
    Ok(())
}

/// The classes, counts and bytes of the rows an ack deletes. `NOT INDEXED` keeps SQLite on
/// the rowid range: left to itself it walks the whole `(class, seq)` index to get the rows in
/// `GROUP BY` order, which made every ack cost the size of the backlog (a 2 M backlog drained
/// at half the speed of a 200 k one).
pub(super) const ACKED_TOTALS: &str =
    "SELECT class, count(*), coalesce(sum(length(body)), 0) FROM records NOT INDEXED
     WHERE seq <= ?1 GROUP BY class";

/// Deletes every record with `seq <= through` and forgets them in `counters`.
pub(super) fn delete_through(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    through: u64,
) -> rusqlite::Result<()> {
    let mut totals = tx.prepare_cached(ACKED_TOTALS)?;
    let mut rows = totals.query(params![to_i64(through)])?;
    while let Some(row) = rows.next()? {
        let class = class_from_index(row.get(0)?).unwrap_or(DropClass::Event);
        counters.remove(class, to_u64(row.get(1)?), to_u64(row.get(2)?));
    }
    tx.prepare_cached("DELETE FROM records WHERE seq <= ?1")?.execute(params![to_i64(through)])?;
    Ok(())
}

/// Reads a command's ledger entry: `None` if never begun, else its encoded outcome.
pub(super) fn command_outcome(
    tx: &Transaction<'_>,
    id: &[u8],
) -> rusqlite::Result<Option<Option<Vec<u8>>>> {
    tx.prepare_cached("SELECT outcome FROM commands WHERE id = ?1")?
        .query_row(params![id], |row| row.get(0))
        .optional()
}

/// One `records` row as stored, before it is trusted.
pub(super) struct StoredRow {
    pub seq: u64,
    /// `None` when the class number is not one this build knows.
    pub class: Option<DropClass>,
    pub observed_at: Option<i64>,
    /// `None` when the column is not a blob.
    pub body: Option<Vec<u8>>,
    pub crc: i64,
    pub len: usize,
}

pub(super) fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    let body = match row.get_ref(3)? {
        rusqlite::types::ValueRef::Blob(bytes) => Some(bytes.to_vec()),
        _ => None,
    };
    Ok(StoredRow {
        seq: to_u64(row.get(0)?),
        class: class_from_index(row.get(1)?),
        observed_at: row.get::<_, Option<i64>>(2).ok().flatten(),
        len: body.as_ref().map_or(0, Vec::len),
        body,
        crc: row.get::<_, Option<i64>>(4).ok().flatten().unwrap_or(-1),
    })
}

impl StoredRow {
    /// The record, or why the row cannot be trusted.
    pub fn decode(&self) -> Result<Record, String> {
        let body = self.body.as_deref().ok_or("body is not a blob")?;
        if i64::from(crc32fast::hash(body)) != self.crc {
            return Err("checksum mismatch".to_owned());
        }
        if self.class.is_none() {
            return Err("unknown class".to_owned());
        }
        let body: RecordBody =
            postcard::from_bytes(body).map_err(|error| format!("undecodable body: {error}"))?;
        Ok(Record {
            seq: Seq(self.seq),
            observed_at: UnixMillis(self.observed_at.unwrap_or_default()),
            body,
        })
    }
}

/// SQLite integers are `i64`; values above `i64::MAX` never occur in practice and saturate.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Negative values never occur in a sound file and read as 0.
pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
