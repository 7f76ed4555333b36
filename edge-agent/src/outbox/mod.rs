//! The agent's durable outbox: every record the agent sends to the hub, in one SQLite file.
//!
//! # Constraints
//!
//! - **Durable before offered.** [`Outbox::append`] gives a record the next sequence
//!   number and buffers it in memory; [`Outbox::commit`] writes everything pending in one
//!   transaction (WAL, `synchronous = FULL`). [`Outbox::read_after`] returns committed records
//!   only. The driver commits every [`COMMIT_INTERVAL`], so at most that much unoffered data
//!   is at risk on power loss.
//! - **Deleted only when acknowledged.** [`Outbox::ack`] is cumulative and deletes every
//!   record at or below it; nothing else deletes a record except the capacity policy (counted)
//!   and a failed checksum (counted).
//! - **Bounded.** `capacity_bytes` bounds the encoded bodies of telemetry, health and events
//!   together; snapshot chunks have their own `snapshot_capacity_bytes`. Over budget, the
//!   oldest telemetry goes first, then the oldest health, then the oldest events (which
//!   carry command results and job records), see `policy.rs`. Rows are evicted in seq order,
//!   so a batch being committed loses nothing before older rows of its class. A single record
//!   larger than its budget is refused with [`OutboxError::RecordTooLarge`]. In memory, at most
//!   [`MAX_PENDING_RECORDS`] records and [`MAX_PENDING_BYTES`] bytes wait for a commit.
//! - **Fast start.** Opening reads the `meta` table and one primary-key lookup; it never
//!   scans `records`, so a 1 GB backlog opens in milliseconds and stays on disk.
//! - Synchronous: the async driver calls it from a blocking thread. No `Drop` commit:
//!   the driver commits on shutdown, and dropping without one is what a crash looks like.
//!
//! # Invariants
//!
//! - Sequence numbers strictly increase and are never reused for a committed record, even
//!   after every record was acknowledged and deleted: `meta.last_seq` is written in the same
//!   transaction as the records. Seqs handed out by `append` but lost uncommitted in a crash
//!   were never offered, and are issued again.
//! - `acked_through <= durable_through`; no row has `seq <= acked_through`.
//! - The per-class record and byte counters in `meta` equal the rows' totals: every insert,
//!   eviction, ack and corrupt-row deletion updates them in its own transaction.
//! - Every drop is counted by [`DropClass`] and [`DropReason`] in `meta`, twice: the
//!   not-yet-reported counters (reset when reported, see [`Outbox::take_drops`]) and the
//!   totals since the file was created (never reset, see [`OutboxStats::drops_total`]).
//!
//! # On-disk format (schema version 1)
//!
//! ```text
//! records(seq INTEGER PRIMARY KEY, class INTEGER NOT NULL, observed_at INTEGER,
//!         body BLOB NOT NULL, crc INTEGER NOT NULL)     + INDEX (class, seq)
//! meta(key TEXT PRIMARY KEY, value INTEGER)    schema_version, last_seq, acked_through,
//!         records.<class>, bytes.<class>, drops.<class>.<reason>, drops_total.<class>.<reason>
//! commands(id BLOB PRIMARY KEY, expires_at INTEGER NOT NULL, outcome BLOB)
//! job_ends(printer TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL,
//!          seen INTEGER NOT NULL)
//! open_jobs(printer TEXT PRIMARY KEY, name TEXT)
//! ```
//!
//! `job_ends` holds each printer's latest job-end record (see `job_ends.rs`) and `open_jobs`
//! each printer's job in progress (see `open_jobs.rs`), both written in the transaction that
//! commits the record. They came after version 1 without a version change: `CREATE TABLE IF
//! NOT EXISTS` adds them to an older file, and an older build ignores them.
//!
//! `body` is the postcard encoding of a [`RecordBody`], `crc` its CRC-32. `class` is 0
//! telemetry, 1 event (printer events and command results), 2 snapshot, 3 health; like the
//! wire enums, these numbers are append-only. "Bytes" everywhere means encoded body bytes;
//! the file is larger by SQLite's per-row cost, and does not shrink after deletions
//! (freed pages are reused). `commands.outcome` is a postcard [`CommandOutcome`], NULL while
//! the command runs.
//!
//! # Failure and recovery
//!
//! - **Torn tail.** A commit is a WAL transaction; SQLite ignores a torn or unsynced WAL
//!   tail on the next open, so the outbox resumes at the last completed commit.
//! - **Corrupt row.** [`Outbox::read_after`] checks each row's CRC and decodes it; a row
//!   that fails is deleted, counted as [`DropReason::Corrupt`], logged and skipped.
//! - **Unreadable file.** If SQLite calls the file corrupt or not a database while opening,
//!   it is renamed to `<name>.corrupt-<unix_ms>` (with its `-wal` and `-shm`), a fresh one is
//!   created, an error is logged and [`OpenReport::moved_aside`] says so. The fresh file's
//!   seqs start again at 1; [`Outbox::resume`], called with the hub's `Welcome.acked_through`,
//!   moves every stored seq above what the hub already has, so nothing new is taken for a
//!   duplicate.
//! - **Disk full** (`SQLITE_FULL`, also what `PRAGMA max_page_count` produces). The commit
//!   is rolled back and the disk reserve (`<file>.reserve`, [`RESERVE_BYTES`], written at
//!   open and whenever there is room again) is deleted: on a really full filesystem even a
//!   delete cannot run, since WAL mode appends the freed pages to the log first. Then the
//!   oldest telemetry (then snapshot chunks, then health) worth twice the batch's bytes is
//!   evicted (counted) in a transaction of its own and the commit retried, doubling the
//!   eviction each time, until it fits or only events are left. After a save, a checkpoint
//!   folds the log into the database and the reserve is written again if it fits (else
//!   retried a minute later). If nothing more can be evicted, [`OutboxError::DiskFull`] is
//!   returned and the batch stays pending in memory for the next commit; over the pending
//!   bound the oldest pending telemetry is shed first (counted). One log line says what
//!   happened: the reserve released, what was evicted, whether the batch was saved and the
//!   reserve restored. Nothing panics.
//! - **Command ledger.** [`Outbox::command_begin`] durably records a command before it
//!   runs, so a restart never runs it twice; a command begun but not finished reads back as
//!   `Seen { outcome: None }` and the driver reports it as interrupted rather than retrying.
//!   The agent prunes entries a day past their expiry, judged on the hub's clock (which wrote
//!   `expires_at`), once it has measured the offset; the hub never delivers a command after
//!   its expiry.

mod job_ends;
mod open_jobs;
mod policy;
mod reserve;
mod store;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use proto::{
    CommandId, CommandOutcome, DropClass, DropCount, DropReason, Record, RecordBody, Seq,
    UnixMillis,
};
use rusqlite::{Connection, TransactionBehavior, params};

use self::job_ends::JobEnds;
pub use self::job_ends::{JobEnd, JobEndFacts};
pub use self::open_jobs::OpenJob;
use self::open_jobs::OpenJobs;
use self::policy::{CLASSES, Capacity, DropTable, PENDING_SHED_ORDER, add_tables, drop_counts};
pub use self::reserve::RESERVE_BYTES;
use self::reserve::Reserve;
use self::store::{Counters, OpenError, read_row, to_i64};

/// How often the driver commits: the most data a power loss can take.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);

/// The default budget for telemetry, events and health, in encoded bytes.
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 << 20;

/// The default budget for snapshot chunks, in encoded bytes.
pub const DEFAULT_SNAPSHOT_CAPACITY_BYTES: u64 = 16 << 20;

/// The most records waiting in memory for a commit (only reached while the disk is full).
pub const MAX_PENDING_RECORDS: usize = 10_000;

/// The most encoded bytes waiting in memory for a commit.
pub const MAX_PENDING_BYTES: u64 = 16 << 20;

/// Where the outbox lives and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The SQLite file; its directory is created if missing.
    pub path: PathBuf,
    /// Budget for telemetry, events and health together, in encoded bytes (8 MiB and up
    /// is useful).
    pub capacity_bytes: u64,
    /// Budget for snapshot chunks, in encoded bytes.
    pub snapshot_capacity_bytes: u64,
}

impl OutboxConfig {
    /// `path` with the default budgets (64 MiB, 16 MiB for snapshots).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OutboxConfig {
            path: path.into(),
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            snapshot_capacity_bytes: DEFAULT_SNAPSHOT_CAPACITY_BYTES,
        }
    }
}

/// What [`Outbox::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Records stored and not yet acknowledged.
    pub records: u64,
    /// Their encoded bytes, snapshots included.
    pub bytes: u64,
    /// The highest seq committed so far.
    pub last_seq: Seq,
    pub acked_through: Seq,
    /// Where an unreadable database was moved before starting afresh.
    pub moved_aside: Option<PathBuf>,
    /// Drops not yet reported to the hub.
    pub drops: Vec<DropCount>,
}

/// Records and bytes of one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    pub class: DropClass,
    pub records: u64,
    pub bytes: u64,
}

/// A snapshot of the outbox's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    /// Committed records not yet acknowledged.
    pub records: u64,
    /// Their encoded bytes, snapshots included.
    pub bytes: u64,
    pub per_class: Vec<ClassStats>,
    /// Records appended but not yet committed.
    pub pending: usize,
    /// Drops not yet reported (what [`Outbox::take_drops`] would return); zeros left out.
    pub drops: Vec<DropCount>,
    /// Every drop since the file was created; zeros left out.
    pub drops_total: Vec<DropCount>,
}

/// What the ledger knows of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLedger {
    /// Never seen: now recorded as started; execute it.
    New,
    /// Already started, so never execute it again; `outcome` is `None` if it never finished
    /// (the agent stopped while it ran).
    Seen { outcome: Option<CommandOutcome> },
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox's directory is missing and cannot be created.
    #[error("cannot create outbox directory for {path}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database file cannot be opened or written (permissions, read-only mount).
    #[error("cannot open outbox {path} for writing")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The disk or the database's page limit is full even after evicting telemetry,
    /// snapshots and health. The batch stays pending; a later commit retries it.
    #[error("disk full writing outbox {path}; {pending} records kept in memory")]
    DiskFull { path: PathBuf, pending: usize },
    /// SQLite found the file corrupt while running. Reopening moves it aside if SQLite
    /// still cannot read it.
    #[error("outbox {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("outbox {path} failed")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation (moving a corrupt file aside) failed.
    #[error("cannot move unreadable outbox {path} aside")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer build.
    #[error("outbox {path} has schema version {found}; this build reads version 1")]
    UnsupportedSchema { path: PathBuf, found: i64 },
    /// The hub acknowledged a seq this outbox never committed.
    #[error("ack through {through} beyond outbox {path}'s durable seq {durable_through}")]
    AckBeyondDurable { path: PathBuf, through: Seq, durable_through: Seq },
    /// One record is larger than its class's whole budget; it was dropped and counted.
    #[error("{class:?} record of {size} bytes exceeds the outbox budget of {capacity} bytes")]
    RecordTooLarge { class: DropClass, size: u64, capacity: u64 },
    /// `command_finish` for a command that was never begun (or was pruned).
    #[error("command {id} was never begun in outbox {path}")]
    UnknownCommand { path: PathBuf, id: CommandId },
    /// Every sequence number SQLite can store has been used.
    #[error("outbox {path} has no sequence numbers left")]
    SeqExhausted { path: PathBuf },
    /// A value could not be encoded with postcard.
    #[error("cannot encode an outbox record")]
    Encode(#[source] postcard::Error),
}

/// The durable outbox. See the module documentation for its contract.
pub struct Outbox {
    connection: Connection,
    path: PathBuf,
    capacity: Capacity,
    /// What `meta` holds as of the last commit.
    counters: Counters,
    pending: VecDeque<Pending>,
    pending_bytes: u64,
    /// The seq the next `append` gets.
    next_seq: u64,
    /// Drops that happened outside a transaction (refused or shed records); saved at the
    /// next commit.
    unsaved_drops: DropTable,
    /// Drops handed out by `take_drops`; marked reported at the next commit.
    taken_drops: DropTable,
    /// Disk space set aside for evicting on a full disk.
    reserve: Reserve,
    /// Each printer's latest job end, for the plate check.
    job_ends: JobEnds,
    /// Each printer's job in progress (see `open_jobs.rs`).
    open_jobs: OpenJobs,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    observed_at: UnixMillis,
    class: DropClass,
    body: Vec<u8>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("durable_through", &self.counters.last_seq)
            .field("acked_through", &self.counters.acked_through)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens or creates the outbox; moves an unreadable file aside rather than failing.
    pub fn open(config: OutboxConfig) -> Result<(Outbox, OpenReport), OutboxError> {
        let path = config.path;
        let opened = store::open(&path).map_err(|error| match error {
            OpenError::Directory(source) => OutboxError::Directory { path: path.clone(), source },
            OpenError::MoveAside(source) => OutboxError::Io { path: path.clone(), source },
            OpenError::Schema(found) => {
                OutboxError::UnsupportedSchema { path: path.clone(), found }
            }
            OpenError::Sqlite(source) => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly) => {
                    OutboxError::NotWritable { path: path.clone(), source }
                }
                _ => sqlite_error(&path, source),
            },
        })?;
        let counters = opened.counters;
        let job_ends = JobEnds::load(&opened.connection).map_err(|e| sqlite_error(&path, e))?;
        let open_jobs = OpenJobs::load(&opened.connection).map_err(|e| sqlite_error(&path, e))?;
        let reserve = Reserve::beside(&path);
        let mut outbox = Outbox {
            connection: opened.connection,
            path,
            capacity: Capacity {
                bytes: config.capacity_bytes,
                snapshot_bytes: config.snapshot_capacity_bytes,
            },
            next_seq: counters.last_seq + 1,
            counters,
            pending: VecDeque::new(),
            pending_bytes: 0,
            unsaved_drops: DropTable::default(),
            taken_drops: DropTable::default(),
            reserve,
            job_ends,
            open_jobs,
        };
        if let Err(error) = outbox.reserve.fill() {
            tracing::warn!(path = %outbox.reserve.path().display(), %error,
                reserve_bytes = RESERVE_BYTES,
                "No room for the outbox's disk reserve; on a full disk the outbox may be unable \
                 to evict telemetry. It is written again once there is room.");
        }
        let stats = outbox.stats();
        let report = OpenReport {
            records: stats.records,
            bytes: stats.bytes,
            last_seq: outbox.durable_through(),
            acked_through: outbox.acked_through(),
            moved_aside: opened.moved_aside,
            drops: stats.drops,
        };
        tracing::info!(path = %outbox.path.display(), records = report.records,
            bytes = report.bytes, last_seq = %report.last_seq, "Opened outbox.");
        Ok((outbox, report))
    }

    /// Gives `body` the next seq and buffers it; durable only after [`Outbox::commit`].
    pub fn append(
        &mut self,
        observed_at: UnixMillis,
        body: RecordBody,
    ) -> Result<Seq, OutboxError> {
        // A job end is marked even if its record is refused below: the plate check must
        // never forget one (the mark then names the seq the next record gets).
        self.job_ends.note(&body, self.next_seq, observed_at);
        self.open_jobs.note(&body);
        let class = class_of(&body);
        let body = postcard::to_stdvec(&body).map_err(OutboxError::Encode)?;
        let size = body.len() as u64;
        let capacity = self.capacity.limit_for(class).min(MAX_PENDING_BYTES);
        if size > capacity {
            self.count_unsaved_drop(class, DropReason::Capacity);
            tracing::warn!(?class, size, capacity, "Refused a record larger than its budget.");
            return Err(OutboxError::RecordTooLarge { class, size, capacity });
        }
        if self.next_seq > i64::MAX as u64 {
            return Err(OutboxError::SeqExhausted { path: self.path.clone() });
        }
        while self.pending.len() >= MAX_PENDING_RECORDS
            || self.pending_bytes + size > MAX_PENDING_BYTES
        {
            self.shed_pending();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending_bytes += size;
        self.pending.push_back(Pending { seq, observed_at, class, body });
        Ok(Seq(seq))
    }

    /// Writes everything pending (and the drop counters) in one transaction, applying the
    /// capacity policy. Returns the new `durable_through`.
    pub fn commit(&mut self) -> Result<Seq, OutboxError> {
        if self.pending.is_empty() && self.drop_tables_settled() {
            return Ok(self.durable_through());
        }
        match self.try_commit() {
            Ok(()) => {
                if self.reserve.due() {
                    self.restore_reserve();
                }
                return Ok(self.durable_through());
            }
            Err(error) if store::is_full(&error) => {}
            Err(error) => return Err(self.error(error)),
        }
        // The disk is full. Give back the reserve so that SQLite can write the log frames of
        // an eviction at all, then evict the oldest telemetry (then snapshots, then health):
        // body bytes freed are not pages freed (partly filled pages, index pages), so twice
        // the batch, then double, until the batch fits or nothing evictable is left.
        let released = self.reserve.release();
        let mut evicted = store::Evicted::default();
        let mut to_free = self.pending_bytes.max(1).saturating_mul(2);
        let saved = loop {
            let freed = match self.make_room(to_free) {
                Ok(freed) => freed,
                Err(error) if store::is_full(&error) => break false,
                Err(error) => return Err(self.error(error)),
            };
            if freed.records == 0 {
                break false;
            }
            evicted.records += freed.records;
            evicted.bytes += freed.bytes;
            match self.try_commit() {
                Ok(()) => break true,
                Err(error) if store::is_full(&error) => to_free = to_free.saturating_mul(2),
                Err(error) => return Err(self.error(error)),
            }
        };
        if saved {
            let restored = self.restore_reserve();
            let path = self.path.display();
            tracing::warn!(%path, released_reserve_bytes = released, evicted_records =
                evicted.records, evicted_bytes = evicted.bytes, reserve_restored = restored,
                "Outbox disk full: evicted the oldest telemetry and saved the batch.");
            return Ok(self.durable_through());
        }
        let pending = self.pending.len();
        let path = self.path.display();
        tracing::error!(%path, released_reserve_bytes = released, evicted_records =
            evicted.records, evicted_bytes = evicted.bytes, pending,
            "Outbox disk full and nothing left to evict but events and results: the batch is \
             kept in memory until the hub acknowledges records or the disk has room.");
        Err(OutboxError::DiskFull { path: self.path.clone(), pending })
    }

    /// Folds the write-ahead log into the database (freeing its blocks) and writes the disk
    /// reserve again. Returns whether the reserve is in place.
    fn restore_reserve(&mut self) -> bool {
        // A failed checkpoint leaves the log as it was; the reserve may still fit.
        let _ = self.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        match self.reserve.fill() {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "The outbox's disk reserve does not fit yet.");
                false
            }
        }
    }

    /// What the outbox knows of `printer`'s job ends: the latest (committed or pending) and
    /// how many were marked since it opened.
    pub fn job_ends(&self, printer: &proto::PrinterId) -> JobEndFacts {
        self.job_ends.facts(printer)
    }

    /// `printer`'s job in progress as recorded (committed, or appended and pending): what a
    /// restarted printer link resumes.
    pub fn open_job(&self, printer: &proto::PrinterId) -> Option<OpenJob> {
        self.open_jobs.open(printer)
    }

    /// Marks a job end of `printer` that may have happened while nobody watched (the agent
    /// found the printer idle or finished when it started watching), at the seq the next
    /// record gets; saved with the next commit. See [`JobEnd::seen`].
    pub fn note_unseen_job_end(&mut self, printer: &proto::PrinterId, at: UnixMillis) {
        self.job_ends.note_unseen(printer, self.next_seq, at);
    }

    /// Records appended and not yet committed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The highest committed seq.
    pub fn durable_through(&self) -> Seq {
        Seq(self.counters.last_seq)
    }

    /// Committed records with `seq > after`, ascending: at most `max_records` (at least 1)
    /// and `max_bytes` of encoded bodies, but always one record if any exists. Rows that
    /// fail their checksum or decoding are deleted, counted and skipped.
    pub fn read_after(
        &mut self,
        after: Seq,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, OutboxError> {
        let max_records = max_records.max(1);
        let mut records = Vec::new();
        let mut n_bytes = 0;
        let mut cursor = after.0;
        loop {
            let wanted = max_records - records.len();
            let mut corrupt = Vec::new();
            let mut n_rows = 0;
            let mut full = false;
            {
                let mut statement = self
                    .connection
                    .prepare_cached(
                        "SELECT seq, class, observed_at, body, crc FROM records
                         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(|error| sqlite_error(&self.path, error))?;
                let mut rows = statement
                    .query(params![to_i64(cursor), to_i64(wanted as u64)])
                    .map_err(|error| sqlite_error(&self.path, error))?;
                while let Some(row) =
                    rows.next().map_err(|error| sqlite_error(&self.path, error))?
                {
                    n_rows += 1;
                    let row = read_row(row).map_err(|error| sqlite_error(&self.path, error))?;
                    cursor = row.seq;
                    match row.decode() {
                        Ok(record) => {
                            if !records.is_empty() && n_bytes + row.len > max_bytes {
                                full = true;
                                break;
                            }
                            n_bytes += row.len;
                            records.push(record);
                        }
                        Err(why) => corrupt.push((row.seq, row.class, row.len, why)),
                    }
                }
            }
            if !corrupt.is_empty() {
                self.discard_corrupt(&corrupt).map_err(|error| self.error(error))?;
            }
            if full || records.len() >= max_records || n_rows < wanted {
                return Ok(records);
            }
        }
    }

    /// Deletes every record with `seq <= through`, durably. An ack at or below the current
    /// one is ignored; one above `durable_through` is an error.
    pub fn ack(&mut self, through: Seq) -> Result<(), OutboxError> {
        if through.0 <= self.counters.acked_through {
            return Ok(());
        }
        if through.0 > self.counters.last_seq {
            return Err(OutboxError::AckBeyondDurable {
                path: self.path.clone(),
                through,
                durable_through: self.durable_through(),
            });
        }
        self.transact(|tx, counters| {
            store::delete_through(tx, counters, through.0)?;
            counters.acked_through = through.0;
            Ok(())
        })
        .map_err(|error| self.error(error))
    }

    /// The highest seq the hub acknowledged.
    pub fn acked_through(&self) -> Seq {
        Seq(self.counters.acked_through)
    }

    /// Takes the hub's `Welcome.acked_through` at the start of a sync session. Normally an
    /// [`ack`](Outbox::ack). If the hub has committed more than this outbox ever did (the
    /// file was lost or moved aside), every stored and pending seq is shifted above it, so
    /// the hub never takes a new record for one it already has.
    pub fn resume(&mut self, hub_acked_through: Seq) -> Result<(), OutboxError> {
        if hub_acked_through.0 <= self.counters.last_seq {
            return self.ack(hub_acked_through);
        }
        let offset = hub_acked_through.0;
        let exhausted = || OutboxError::SeqExhausted { path: self.path.clone() };
        let next_seq = self.next_seq.checked_add(offset).ok_or_else(exhausted)?;
        if next_seq > i64::MAX as u64 {
            return Err(exhausted());
        }
        tracing::warn!(path = %self.path.display(), hub_acked_through = %hub_acked_through,
            durable_through = %self.durable_through(),
            "Hub is ahead of the outbox (was it reset?); renumbering records above it.");
        // Every new seq is above `offset`, which is above every old one: no collisions.
        // The job-end marks move with their records: a mark left at its old seq would read
        // as a job end the hub had already seen, and let a start confirmed before it pass.
        self.transact(|tx, counters| {
            tx.execute("UPDATE records SET seq = seq + ?1", params![to_i64(offset)])?;
            tx.execute("UPDATE job_ends SET seq = seq + ?1", params![to_i64(offset)])?;
            counters.last_seq += offset;
            counters.acked_through = offset;
            Ok(())
        })
        .map_err(|error| self.error(error))?;
        self.job_ends.shift(offset);
        for pending in &mut self.pending {
            pending.seq += offset;
        }
        self.next_seq = next_seq;
        Ok(())
    }

    /// The outbox's counters.
    pub fn stats(&self) -> OutboxStats {
        let per_class: Vec<ClassStats> = CLASSES
            .iter()
            .enumerate()
            .map(|(index, &class)| ClassStats {
                class,
                records: self.counters.records[index],
                bytes: self.counters.bytes[index],
            })
            .collect();
        OutboxStats {
            records: per_class.iter().map(|class| class.records).sum(),
            bytes: per_class.iter().map(|class| class.bytes).sum(),
            per_class,
            pending: self.pending.len(),
            drops: drop_counts(&self.unreported_drops()),
            drops_total: drop_counts(&add_tables(&self.counters.drops_total, &self.unsaved_drops)),
        }
    }

    /// The drops not yet reported, to put in an `AgentHealth` record. They count as
    /// reported once the next commit succeeds, in the same transaction that writes that
    /// record; if the process dies first, they are reported again. So append the health
    /// record before the next commit (or lose the counts from the report; the totals in
    /// [`OutboxStats::drops_total`] keep them).
    pub fn take_drops(&mut self) -> Vec<DropCount> {
        let unreported = self.unreported_drops();
        self.taken_drops = add_tables(&self.taken_drops, &unreported);
        drop_counts(&unreported)
    }

    /// Durably records that command `id` starts now, unless it was seen before.
    pub fn command_begin(
        &mut self,
        id: CommandId,
        expires_at: UnixMillis,
    ) -> Result<CommandLedger, OutboxError> {
        let path = self.path.clone();
        let ledger = self
            .transact(|tx, _| {
                let Some(outcome) = store::command_outcome(tx, &id.0)? else {
                    tx.prepare_cached("INSERT INTO commands (id, expires_at) VALUES (?1, ?2)")?
                        .execute(params![&id.0[..], expires_at.0])?;
                    return Ok(CommandLedger::New);
                };
                let outcome = outcome.and_then(|bytes| {
                    postcard::from_bytes(&bytes)
                        .inspect_err(|error| {
                            tracing::warn!(path = %path.display(), command = %id, %error,
                            "Unreadable command outcome in the ledger.");
                        })
                        .ok()
                });
                Ok(CommandLedger::Seen { outcome })
            })
            .map_err(|error| self.error(error))?;
        Ok(ledger)
    }

    /// Durably stores the outcome of a begun command.
    pub fn command_finish(
        &mut self,
        id: CommandId,
        outcome: &CommandOutcome,
    ) -> Result<(), OutboxError> {
        let outcome = postcard::to_stdvec(outcome).map_err(OutboxError::Encode)?;
        let n_updated = self
            .transact(|tx, _| {
                tx.prepare_cached("UPDATE commands SET outcome = ?2 WHERE id = ?1")?
                    .execute(params![&id.0[..], outcome])
            })
            .map_err(|error| self.error(error))?;
        if n_updated == 0 {
            return Err(OutboxError::UnknownCommand { path: self.path.clone(), id });
        }
        Ok(())
    }

    /// Forgets ledger entries that expired before `older_than`; returns how many. Pass a
    /// time well past any expiry a delayed command could still carry.
    pub fn prune_commands(&mut self, older_than: UnixMillis) -> Result<u64, OutboxError> {
        let n_deleted = self
            .transact(|tx, _| {
                tx.prepare_cached("DELETE FROM commands WHERE expires_at < ?1")?
                    .execute(params![older_than.0])
            })
            .map_err(|error| self.error(error))?;
        Ok(n_deleted as u64)
    }

    /// Limits the database to `pages` pages (clamped to at least its current size; 0 changes
    /// nothing), to simulate a
    /// full disk. Returns the limit in force.
    #[cfg(test)]
    fn set_max_page_count(&mut self, pages: u64) -> u64 {
        let limit: i64 = self
            .connection
            .pragma_update_and_check(None, "max_page_count", to_i64(pages), |row| row.get(0))
            .expect("max_page_count answers with the limit");
        store::to_u64(limit)
    }

    fn try_commit(&mut self) -> rusqlite::Result<()> {
        let capacity = self.capacity;
        let last_seq = self.next_seq - 1;
        let (unsaved, taken) = (self.unsaved_drops, self.taken_drops);
        let pending = &self.pending;
        let tx = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counters = self.counters.clone();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (seq, class, observed_at, body, crc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for record in pending {
                let class = policy::class_index(record.class);
                insert.execute(params![
                    to_i64(record.seq),
                    class as i64,
                    record.observed_at.0,
                    record.body,
                    crc32fast::hash(&record.body),
                ])?;
                counters.records[class] += 1;
                counters.bytes[class] += record.body.len() as u64;
            }
        }
        counters.last_seq = counters.last_seq.max(last_seq);
        for (class, reasons) in unsaved.iter().enumerate() {
            for (reason, &count) in reasons.iter().enumerate() {
                counters.drops[class][reason] += count;
                counters.drops_total[class][reason] += count;
            }
        }
        for (class, reasons) in taken.iter().enumerate() {
            for (reason, &count) in reasons.iter().enumerate() {
                counters.drops[class][reason] = counters.drops[class][reason].saturating_sub(count);
            }
        }
        store::enforce_capacity(&tx, &mut counters, capacity)?;
        counters.save(&tx, &self.counters)?;
        self.job_ends.save(&tx)?;
        self.open_jobs.save(&tx)?;
        tx.commit()?;
        self.counters = counters;
        self.job_ends.committed();
        self.open_jobs.committed();
        self.pending.clear();
        self.pending_bytes = 0;
        self.unsaved_drops = DropTable::default();
        self.taken_drops = DropTable::default();
        Ok(())
    }

    /// Evicts the oldest telemetry, then snapshots, then health, worth `bytes`, in a
    /// transaction of its own. Returns what it removed.
    fn make_room(&mut self, bytes: u64) -> rusqlite::Result<store::Evicted> {
        self.transact(|tx, counters| {
            let mut freed = store::Evicted::default();
            for class in [DropClass::Telemetry, DropClass::Snapshot, DropClass::Health] {
                if freed.bytes < bytes {
                    let evicted = store::evict_oldest(tx, counters, class, bytes - freed.bytes)?;
                    freed.records += evicted.records;
                    freed.bytes += evicted.bytes;
                }
            }
            Ok(freed)
        })
    }

    fn discard_corrupt(
        &mut self,
        rows: &[(u64, Option<DropClass>, usize, String)],
    ) -> rusqlite::Result<()> {
        let path = self.path.clone();
        self.transact(|tx, counters| {
            for (seq, class, len, why) in rows {
                tracing::error!(path = %path.display(), seq, %why,
                    "Skipped a corrupt outbox record.");
                tx.prepare_cached("DELETE FROM records WHERE seq = ?1")?
                    .execute(params![to_i64(*seq)])?;
                // A row whose class number is garbage is counted as an event: the
                // conservative guess about what was lost.
                let class = class.unwrap_or(DropClass::Event);
                counters.remove(class, 1, *len as u64);
                counters.count_drop(class, DropReason::Corrupt, 1);
            }
            Ok(())
        })
    }

    /// Runs `f` in an immediate transaction on a copy of the counters, saving them and
    /// adopting the copy when the commit succeeds.
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &mut Counters) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let tx = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counters = self.counters.clone();
        let value = f(&tx, &mut counters)?;
        counters.save(&tx, &self.counters)?;
        tx.commit()?;
        self.counters = counters;
        Ok(value)
    }

    fn shed_pending(&mut self) {
        let index = PENDING_SHED_ORDER
            .iter()
            .find_map(|&class| self.pending.iter().position(|record| record.class == class))
            .unwrap_or(0);
        if let Some(shed) = self.pending.remove(index) {
            self.pending_bytes -= shed.body.len() as u64;
            self.count_unsaved_drop(shed.class, DropReason::Capacity);
            tracing::warn!(seq = shed.seq, class = ?shed.class,
                "Outbox pending batch full; dropped its oldest record.");
        }
    }

    fn count_unsaved_drop(&mut self, class: DropClass, reason: DropReason) {
        self.unsaved_drops[policy::class_index(class)][policy::reason_index(reason)] += 1;
    }

    fn unreported_drops(&self) -> DropTable {
        let mut table = add_tables(&self.counters.drops, &self.unsaved_drops);
        for (row, taken) in table.iter_mut().zip(&self.taken_drops) {
            for (count, taken) in row.iter_mut().zip(taken) {
                *count = count.saturating_sub(*taken);
            }
        }
        table
    }

    fn drop_tables_settled(&self) -> bool {
        self.unsaved_drops == DropTable::default() && self.taken_drops == DropTable::default()
    }

    fn error(&self, error: rusqlite::Error) -> OutboxError {
        match sqlite_error(&self.path, error) {
            OutboxError::DiskFull { path, .. } => {
                OutboxError::DiskFull { path, pending: self.pending.len() }
            }
            error => error,
        }
    }
}

/// The retention class of a record body.
pub fn class_of(body: &RecordBody) -> DropClass {
    match body {
        RecordBody::Telemetry(_) | RecordBody::TelemetryV2(_) => DropClass::Telemetry,
        RecordBody::PrinterEvent(_)
        | RecordBody::CommandResult(_)
        | RecordBody::PrintersApplied(_) => DropClass::Event,
        RecordBody::Snapshot(_) => DropClass::Snapshot,
        RecordBody::Discovered(_)
        | RecordBody::AgentHealth(_)
        | RecordBody::AgentHealthV2(_)
        | RecordBody::AgentHealthV3(_)
        | RecordBody::CameraHealth(_) => DropClass::Health,
    }
}

fn sqlite_error(path: &std::path::Path, source: rusqlite::Error) -> OutboxError {
    let path = path.to_owned();
    if store::is_corruption(&source) {
        OutboxError::Corrupt { path, source }
    } else if store::is_full(&source) {
        OutboxError::DiskFull { path, pending: 0 }
    } else {
        OutboxError::Sqlite { path, source }
    }
}
