//! The outbox's disk reserve: a file of [`RESERVE_BYTES`] beside the database, written when
//! there is room and deleted when the disk is full.
//!
//! On a full filesystem SQLite cannot even delete: in WAL mode a transaction that frees
//! pages must first append them to the write-ahead log, which needs new disk blocks. Deleting
//! the reserve gives that transaction (the eviction of the oldest telemetry) and the retried
//! commit room to run; a checkpoint then folds the log back into the database, whose freed
//! pages are reused, and the reserve is written again once the disk has room.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The reserve's size: room for an eviction and a commit of a full pending batch's WAL
/// frames several times over, and nothing a Pi's card would miss.
pub const RESERVE_BYTES: u64 = 4 << 20;

/// How long after a failed attempt to write the reserve the next one is due.
const RETRY: Duration = Duration::from_secs(60);

/// The reserve file and whether it is in place.
#[derive(Debug)]
pub(super) struct Reserve {
    path: PathBuf,
    held: bool,
    /// When the last attempt to write it failed.
    failed_at: Option<Instant>,
}

impl Reserve {
    /// The reserve of the outbox at `database`: `<database>.reserve`. Not yet written.
    pub(super) fn beside(database: &Path) -> Reserve {
        let mut name = database.as_os_str().to_owned();
        name.push(".reserve");
        Reserve { path: PathBuf::from(name), held: false, failed_at: None }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the reserve is missing and a minute has passed since the last attempt to
    /// write it failed (so a nearly full disk is not written 4 MiB at every commit).
    pub(super) fn due(&self) -> bool {
        !self.held && self.failed_at.is_none_or(|at| at.elapsed() >= RETRY)
    }

    /// Writes the reserve if it is not in place (whole blocks of zeros, synced, so the
    /// filesystem has really given them). A disk without room leaves no partial file.
    pub(super) fn fill(&mut self) -> std::io::Result<()> {
        if self.held {
            return Ok(());
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            self.held = true;
            return Ok(());
        }
        let written = write_zeros(&self.path, RESERVE_BYTES);
        if written.is_err() {
            let _ = std::fs::remove_file(&self.path);
            self.failed_at = Some(Instant::now());
        }
        written?;
        self.held = true;
        self.failed_at = None;
        Ok(())
    }

    /// Deletes the reserve; returns the bytes given back to the filesystem (0 if it was not
    /// in place).
    pub(super) fn release(&mut self) -> u64 {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        self.held = false;
        match std::fs::remove_file(&self.path) {
            Ok(()) => size,
            Err(_) => 0,
        }
    }
}

fn write_zeros(path: &Path, bytes: u64) -> std::io::Result<()> {
    static BLOCK: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut file = std::fs::File::create(path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BLOCK.len() as u64) as usize;
        file.write_all(&BLOCK[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}
