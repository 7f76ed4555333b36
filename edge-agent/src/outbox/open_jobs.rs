//! Each printer's job in progress, kept durably beside the records, so that a restarted
//! agent neither announces a job again nor misses its end: the printer link starts knowing
//! the job (`PrinterLink`'s resumed job), and a printer found printing it goes on as one job,
//! while one found finished or failed ends it with the outcome the printer shows.
//!
//! A job opens with its `JobStarted` record and closes with its `JobFinished` record, in the
//! same transaction as the record, so a crash loses both or neither.

use std::collections::HashMap;

use proto::{PrinterEventKind, PrinterId, RecordBody};
use rusqlite::{Connection, Transaction, params};

/// A job in progress, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJob {
    /// Its name as the printer gave it, if any.
    pub name: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct OpenJobs {
    committed: HashMap<PrinterId, OpenJob>,
    /// Appended since the last commit: `Some` opened, `None` closed.
    pending: HashMap<PrinterId, Option<OpenJob>>,
}

impl OpenJobs {
    pub fn load(connection: &Connection) -> rusqlite::Result<OpenJobs> {
        let mut statement = connection.prepare("SELECT printer, name FROM open_jobs")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
        })?;
        let mut committed = HashMap::new();
        for row in rows {
            let (printer, name) = row?;
            if let Ok(printer) = PrinterId::new(printer) {
                committed.insert(printer, OpenJob { name });
            }
        }
        Ok(OpenJobs { committed, pending: HashMap::new() })
    }

    /// Notes `body` if it opens or closes a job.
    pub fn note(&mut self, body: &RecordBody) {
        let RecordBody::PrinterEvent(event) = body else { return };
        match &event.kind {
            PrinterEventKind::JobStarted { job_name, .. } => {
                self.pending
                    .insert(event.printer.clone(), Some(OpenJob { name: job_name.clone() }));
            }
            PrinterEventKind::JobFinished { .. } => {
                self.pending.insert(event.printer.clone(), None);
            }
            _ => {}
        }
    }

    /// Writes the pending changes in the commit's transaction.
    pub fn save(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO open_jobs (printer, name) VALUES (?1, ?2) \
             ON CONFLICT (printer) DO UPDATE SET name = excluded.name",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM open_jobs WHERE printer = ?1")?;
        for (printer, job) in &self.pending {
            match job {
                Some(job) => upsert.execute(params![printer.as_str(), job.name])?,
                None => delete.execute(params![printer.as_str()])?,
            };
        }
        Ok(())
    }

    /// The commit that saved the pending changes succeeded.
    pub fn committed(&mut self) {
        for (printer, job) in self.pending.drain() {
            match job {
                Some(job) => self.committed.insert(printer, job),
                None => self.committed.remove(&printer),
            };
        }
    }

    /// `printer`'s job in progress, committed or pending.
    pub fn open(&self, printer: &PrinterId) -> Option<OpenJob> {
        match self.pending.get(printer) {
            Some(pending) => pending.clone(),
            None => self.committed.get(printer).cloned(),
        }
    }
}
