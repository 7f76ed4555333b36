//! The agent's side of the sync protocol, sans-IO.
//!
//! ```text
//! agent                              hub
//!   Hello{agent, last_seq} ───────▶
//!                         ◀─────── Welcome{acked_through}   (committed watermark)
//!   Records[seq > acked] ─────────▶  (in order, within the window)
//!                         ◀─────── Ack{through}             (cumulative, after commit)
//!                         ◀─────── Command{id, expires_at, …}
//!   Records[CommandResult] ───────▶
//! ```
//!
//! Invariants: records go out in sequence order and each at most once per connection; the
//! number of sent but unacknowledged records never exceeds the window, so a slow hub slows
//! the agent instead of filling its memory; an acknowledgement deletes through its sequence
//! number and never beyond what was sent. After a reconnect, sending resumes from the hub's
//! committed watermark, not from what this agent thinks it sent.

use proto::Seq;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    /// Delete outbox records through this sequence number (the hub has committed them).
    Delete(Seq),
    /// A session starts from the hub's committed watermark: delete through it, and if the
    /// hub holds records beyond anything in this outbox (the outbox was replaced or lost),
    /// renumber above it, or the hub would discard new records as duplicates
    /// ([`Outbox::resume`](crate::outbox::Outbox::resume)).
    Resume(Seq),
}

/// A protocol violation by the hub; the driver drops the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("the hub acknowledged {through} but only {sent} was sent")]
    AckBeyondSent { through: Seq, sent: Seq },
    #[error("the hub sent {0} before its welcome")]
    NotWelcomed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    AwaitingWelcome,
    Streaming,
}

#[derive(Debug)]
pub struct SyncMachine {
    phase: Phase,
    /// Highest sequence number the hub has committed.
    acked: Seq,
    /// Highest sequence number sent on this connection.
    sent: Seq,
    /// Most records in flight (sent, not yet acknowledged).
    window: u64,
}

impl SyncMachine {
    pub fn new(window: u64) -> SyncMachine {
        SyncMachine { phase: Phase::Disconnected, acked: Seq::ZERO, sent: Seq::ZERO, window }
    }

    pub fn connected(&mut self) {
        self.phase = Phase::AwaitingWelcome;
    }

    pub fn disconnected(&mut self) {
        self.phase = Phase::Disconnected;
        // Whatever was in flight is resent from the hub's watermark on the next connection.
        self.sent = self.acked;
    }

    /// The hub's welcome.
    pub fn welcome(&mut self, acked_through: Seq) -> SyncAction {
        self.phase = Phase::Streaming;
        self.acked = acked_through;
        self.sent = acked_through;
        SyncAction::Resume(acked_through)
    }

    pub fn ack(&mut self, through: Seq) -> Result<Option<SyncAction>, SyncError> {
        if self.phase != Phase::Streaming {
            return Err(SyncError::NotWelcomed("an acknowledgement"));
        }
        if through > self.sent {
            return Err(SyncError::AckBeyondSent { through, sent: self.sent });
        }
        if through <= self.acked {
            return Ok(None);
        }
        self.acked = through;
        Ok(Some(SyncAction::Delete(through)))
    }

    /// Where to read the next batch from and how many records it may hold; `None` while
    /// the window is full or before the welcome.
    pub fn next_batch(&self) -> Option<(Seq, usize)> {
        if self.phase != Phase::Streaming {
            return None;
        }
        let in_flight = self.sent.0 - self.acked.0;
        let room = self.window.saturating_sub(in_flight);
        (room > 0).then_some((self.sent, room as usize))
    }

    /// Records through `through` went out.
    pub fn sent(&mut self, through: Seq) {
        self.sent = self.sent.max(through);
    }

    pub fn acked(&self) -> Seq {
        self.acked
    }

    pub fn in_flight(&self) -> u64 {
        self.sent.0 - self.acked.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming(window: u64, acked: u64) -> SyncMachine {
        let mut machine = SyncMachine::new(window);
        machine.connected();
        machine.welcome(Seq(acked));
        machine
    }

    #[test]
    fn nothing_is_sent_before_the_welcome() {
        let mut machine = SyncMachine::new(100);
        assert_eq!(machine.next_batch(), None);
        machine.connected();
        assert_eq!(machine.next_batch(), None);
        assert_eq!(machine.ack(Seq(1)), Err(SyncError::NotWelcomed("an acknowledgement")));
    }

    #[test]
    fn sending_resumes_from_the_hubs_watermark_and_respects_the_window() {
        let mut machine = streaming(100, 40);
        assert_eq!(machine.next_batch(), Some((Seq(40), 100)));
        machine.sent(Seq(140));
        assert_eq!(machine.next_batch(), None, "window full");
        assert_eq!(machine.ack(Seq(90)), Ok(Some(SyncAction::Delete(Seq(90)))));
        assert_eq!(machine.next_batch(), Some((Seq(140), 50)));
    }

    #[test]
    fn unacknowledged_records_are_resent_after_a_reconnect() {
        let mut machine = streaming(100, 0);
        machine.sent(Seq(80));
        machine.ack(Seq(30)).unwrap();
        machine.disconnected();
        machine.connected();
        // The hub committed up to 50 before the link broke (its ack was lost).
        assert_eq!(machine.welcome(Seq(50)), SyncAction::Resume(Seq(50)));
        assert_eq!(machine.next_batch(), Some((Seq(50), 100)));
    }

    #[test]
    fn an_ack_beyond_what_was_sent_is_a_violation_and_stale_acks_are_ignored() {
        let mut machine = streaming(100, 10);
        machine.sent(Seq(20));
        assert_eq!(
            machine.ack(Seq(21)),
            Err(SyncError::AckBeyondSent { through: Seq(21), sent: Seq(20) })
        );
        assert_eq!(machine.ack(Seq(5)), Ok(None));
        assert_eq!(machine.acked(), Seq(10));
    }
}
