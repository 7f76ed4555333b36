//! Each printer's latest job end, kept durably beside the records: what the clock-free plate
//! check compares a confirmation with (see [`crate::commands`]).
//!
//! A job end is known by the sequence number of its record: the hub names the agent's
//! records it had when a person confirmed the plate clear, and a job end with a higher seq
//! happened after that confirmation. No clock is involved, so a Raspberry Pi that booted
//! hours off decides the same way as one on time.
//!
//! The mark is written in the same transaction as the record, so a crash loses both or
//! neither; after the restart the printer link, which resumes the job the outbox holds as
//! in progress (`open_jobs.rs`), derives the end again from what the printer shows. It is
//! kept even if its record is refused, shed from the pending batch or evicted: forgetting a
//! job end could start a print on an occupied bed. Then the
//! hub never shows that job end, yet once its watermark passes the mark's seq a start
//! confirmed later passes: the person confirming looked at the plate after the job ended.
//! `resume` moves the marks with the records it renumbers.

use std::collections::HashMap;

use proto::{PrinterEventKind, PrinterId, RecordBody, Seq, UnixMillis};
use rusqlite::{Connection, Transaction, params};

use super::store::{to_i64, to_u64};

/// One job end: its record's seq and when the agent saw it (the agent's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobEnd {
    pub seq: Seq,
    pub at: UnixMillis,
    /// `false` for a job end the agent did not see happen: the printer was found idle or
    /// finished when the agent started watching it (after a restart, or a lost link), so a
    /// job may have ended while nobody watched. Marked at the seq the next record gets.
    pub seen: bool,
}

/// What the outbox knows of one printer's job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobEndFacts {
    /// The latest, committed or still pending.
    pub latest: Option<JobEnd>,
    /// Job ends marked since the outbox was opened (records appended, and unseen ones):
    /// compared with how many the recorder counted, it tells whether one is still on its
    /// way to the outbox.
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
        let mut statement = connection.prepare("SELECT printer, seq, at, seen FROM job_ends")?;
        let rows = statement.query_map([], |row| {
            let end = JobEnd {
                seq: Seq(to_u64(row.get(1)?)),
                at: UnixMillis(row.get(2)?),
                seen: row.get(3)?,
            };
            Ok((row.get::<_, String>(0)?, end))
        })?;
        let mut committed = HashMap::new();
        for row in rows {
            let (printer, end) = row?;
            // A row naming no valid printer id cannot be one this build wrote: ignored.
            if let Ok(printer) = PrinterId::new(printer) {
                committed.insert(printer, end);
            }
        }
        Ok(JobEnds { committed, ..JobEnds::default() })
    }

    /// Notes `body` if it is a job end, to get `seq` from `append` (or, if `append` refuses
    /// it, the seq the next record gets).
    pub fn note(&mut self, body: &RecordBody, seq: u64, at: UnixMillis) {
        if let RecordBody::PrinterEvent(event) = body
            && matches!(event.kind, PrinterEventKind::JobFinished { .. })
        {
            self.mark(&event.printer, JobEnd { seq: Seq(seq), at, seen: true });
        }
    }

    /// Marks a job end that may have happened unseen, at `seq` (the next record's).
    pub fn note_unseen(&mut self, printer: &PrinterId, seq: u64, at: UnixMillis) {
        self.mark(printer, JobEnd { seq: Seq(seq), at, seen: false });
    }

    fn mark(&mut self, printer: &PrinterId, end: JobEnd) {
        self.pending.insert(printer.clone(), end);
        *self.appended.entry(printer.clone()).or_default() += 1;
    }

    /// Moves every mark up by `offset`, as `resume` renumbers the records.
    pub fn shift(&mut self, offset: u64) {
        for end in self.committed.values_mut().chain(self.pending.values_mut()) {
            end.seq = Seq(end.seq.0.saturating_add(offset));
        }
    }

    /// Writes the pending marks in the commit's transaction.
    pub fn save(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO job_ends (printer, seq, at, seen) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (printer) DO UPDATE SET seq = excluded.seq, at = excluded.at, \
             seen = excluded.seen",
        )?;
        for (printer, end) in &self.pending {
            upsert.execute(params![printer.as_str(), to_i64(end.seq.0), end.at.0, end.seen])?;
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
