//! Each printer's latest job end, kept durably beside the records: what the clock-free plate
//! check compares a confirmation with (see [`crate::commands`]).
//!
//! A job end is known by the sequence number of its record: the hub names the agent's
//! records it had when a person confirmed the plate clear, and a job end with a higher seq
//! happened after that confirmation. No clock is involved, so a Raspberry Pi that booted
//! hours off decides the same way as one on time.
//!
//! The mark is written in the same transaction as the record, so a crash loses both or
//! neither. It is kept even if its record is shed from the pending batch or later evicted:
//! forgetting a job end could start a print on an occupied bed, while remembering one the
//! hub never received costs nothing (the check compares with the hub's watermark, which
//! still moves past a lost seq).

use std::collections::HashMap;

use proto::{PrinterEventKind, PrinterId, RecordBody, Seq, UnixMillis};
use rusqlite::{Connection, Transaction, params};

use super::store::{to_i64, to_u64};

/// One job end: its record's seq and when the agent saw it (the agent's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobEnd {
    pub seq: Seq,
    pub at: UnixMillis,
}

/// What the outbox knows of one printer's job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobEndFacts {
    /// The latest, committed or still pending.
    pub latest: Option<JobEnd>,
    /// Job-end records appended since the outbox was opened: compared with how many the
    /// printer link reported, it tells whether one is still on its way to the outbox.
    pub appended: u64,
}

#[derive(Debug, Default)]
pub(super) struct JobEnds {
    committed: HashMap<PrinterId, JobEnd>,
    /// Appended since the last commit.
    pending: HashMap<PrinterId, JobEnd>,
    appended: HashMap<PrinterId, u64>,
}

impl JobEnds {
    pub fn load(connection: &Connection) -> rusqlite::Result<JobEnds> {
        let mut statement = connection.prepare("SELECT printer, seq, at FROM job_ends")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })?;
        let mut committed = HashMap::new();
        for row in rows {
            let (printer, seq, at) = row?;
            // A row naming no valid printer id cannot be one this build wrote: ignored.
            if let Ok(printer) = PrinterId::new(printer) {
                committed.insert(printer, JobEnd { seq: Seq(to_u64(seq)), at: UnixMillis(at) });
            }
        }
        Ok(JobEnds { committed, ..JobEnds::default() })
    }

    /// Notes `body` if it is a job end, given `seq` by `append`.
    pub fn note(&mut self, body: &RecordBody, seq: u64, at: UnixMillis) {
        if let RecordBody::PrinterEvent(event) = body
            && matches!(event.kind, PrinterEventKind::JobFinished { .. })
        {
            self.pending.insert(event.printer.clone(), JobEnd { seq: Seq(seq), at });
            *self.appended.entry(event.printer.clone()).or_default() += 1;
        }
    }

    /// Writes the pending marks in the commit's transaction.
    pub fn save(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO job_ends (printer, seq, at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (printer) DO UPDATE SET seq = excluded.seq, at = excluded.at",
        )?;
        for (printer, end) in &self.pending {
            upsert.execute(params![printer.as_str(), to_i64(end.seq.0), end.at.0])?;
        }
        Ok(())
    }

    /// The commit that saved the pending marks succeeded.
    pub fn committed(&mut self) {
        self.committed.extend(self.pending.drain());
    }

    pub fn facts(&self, printer: &PrinterId) -> JobEndFacts {
        JobEndFacts {
            latest: self.pending.get(printer).or_else(|| self.committed.get(printer)).copied(),
            appended: self.appended.get(printer).copied().unwrap_or(0),
        }
    }
}
