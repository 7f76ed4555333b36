//! The hub's side of one agent's sync session, sans-IO.
//!
//! The hub welcomes an agent with its committed watermark, accepts records strictly in
//! sequence order above it, and acknowledges cumulatively once a batch is committed. A record
//! at or below what this session already accepted is a resend and is skipped (the database
//! would ignore it anyway); a record out of order is a protocol violation that ends the
//! connection, because accepting it could hide a gap.

use proto::{Record, Seq};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestViolation {
    #[error("record {got} arrived after {after}: records must come in sequence order")]
    OutOfOrder { after: Seq, got: Seq },
}

#[derive(Debug)]
pub struct IngestSession {
    /// Highest sequence number committed to the database.
    committed: Seq,
    /// Highest sequence number accepted into a batch (committed or not).
    accepted: Seq,
    /// Resent records skipped, for the metrics.
    pub duplicates: u64,
}

impl IngestSession {
    /// A session resuming from the agent's committed watermark.
    pub fn new(committed: Seq) -> IngestSession {
        IngestSession { committed, accepted: committed, duplicates: 0 }
    }

    pub fn committed(&self) -> Seq {
        self.committed
    }

    /// Filters a received batch to the records that must be stored, in order.
    pub fn accept(&mut self, batch: Vec<Record>) -> Result<Vec<Record>, IngestViolation> {
        let mut fresh = Vec::with_capacity(batch.len());
        for record in batch {
            if record.seq <= self.accepted {
                if fresh.is_empty() {
                    self.duplicates += 1;
                    continue;
                }
                return Err(IngestViolation::OutOfOrder { after: self.accepted, got: record.seq });
            }
            self.accepted = record.seq;
            fresh.push(record);
        }
        Ok(fresh)
    }

    /// The database committed through `watermark`; returns the acknowledgement to send, if
    /// it moves.
    pub fn committed_through(&mut self, watermark: Seq) -> Option<Seq> {
        (watermark > self.committed).then(|| {
            self.committed = watermark;
            watermark
        })
    }
}

#[cfg(test)]
mod tests {
    use proto::{AgentHealth, RecordBody, SoftwareVersion, UnixMillis};

    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq: Seq(seq),
            observed_at: UnixMillis(seq as i64),
            body: RecordBody::AgentHealth(AgentHealth {
                outbox_records: 0,
                outbox_bytes: 0,
                drops: Vec::new(),
                disk_free_bytes: 0,
                uptime_s: 0,
                software: SoftwareVersion {
                    version: "0".into(),
                    commit: None,
                    target: "test".into(),
                },
                certificate_expires_at: None,
            }),
        }
    }

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq.0).collect()
    }

    #[test]
    fn records_above_the_watermark_are_accepted_in_order_with_gaps_allowed() {
        let mut session = IngestSession::new(Seq(10));
        let fresh = session.accept(vec![record(11), record(12), record(15)]).unwrap();
        assert_eq!(seqs(&fresh), [11, 12, 15], "a gap is a record the agent dropped");
        assert_eq!(session.committed_through(Seq(15)), Some(Seq(15)));
        assert_eq!(session.committed_through(Seq(15)), None);
    }

    #[test]
    fn resent_records_are_skipped_once_and_counted() {
        let mut session = IngestSession::new(Seq(10));
        let fresh = session.accept(vec![record(9), record(10), record(11)]).unwrap();
        assert_eq!(seqs(&fresh), [11]);
        assert_eq!(session.duplicates, 2);
    }

    #[test]
    fn out_of_order_records_end_the_session() {
        let mut session = IngestSession::new(Seq(0));
        let error = session.accept(vec![record(3), record(2)]).unwrap_err();
        assert_eq!(error, IngestViolation::OutOfOrder { after: Seq(3), got: Seq(2) });
    }
}
