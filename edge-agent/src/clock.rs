//! The agent's clock against the hub's.
//!
//! A Raspberry Pi has no real-time clock. Booted during an outage, before NTP answers, its
//! clock is wherever `fake-hwclock` left it (the last shutdown) or the epoch: hours or days
//! off, and it steps when NTP does answer. So no safety decision compares a time from the
//! hub with the agent's clock. Every place two machines' clocks meet:
//!
//! - **Command expiry** (hub's clock) becomes a monotonic deadline when the command arrives,
//!   worked out on the hub's clock as [`HubClock`] follows it.
//! - **The plate check** compares record sequence numbers, not times (see
//!   [`crate::commands`]); a confirmation by time from a v3 hub is refused.
//! - **Certificate renewal** compares the certificate's end (the hub wrote it) with
//!   [`HubClock::hub_now`].
//! - **The command ledger** is pruned a day past each command's expiry, on the hub's clock.
//! - **The hub's TLS certificate** is accepted by an agent whose clock is before its start,
//!   verified as of that start (see `sync::tls`): the pinned hub CA is the trust, and
//!   refusing would leave a Pi behind in time unable to reach the hub that tells it the time.
//!   It is never judged as of a time before the hub's clock last read (`hub-seen-at` in the
//!   state directory), so a Pi waking up in 1970 still refuses a long-expired certificate.
//! - **The printer's TLS certificate** (`printer::bambu::tls`) is still checked against the
//!   agent's clock: real printers' certificates start years before any Pi clock the agent
//!   would run with, and the simulator's start a day back. A Pi reading the epoch would fail
//!   there; that is left to NTP.
//! - **Record times** (`observed_at`, a snapshot's `captured_at`) are the agent's clock: they
//!   are what it observed, shown as stamped. A skewed agent's times are off by its offset,
//!   which its health records carry and the dashboard flags; the hub orders a printer's
//!   state by seq, not by these times.
//!
//! [`HubClock`] anchors the hub's clock at each welcome (`Welcome.hub_time` plus half the
//! `Hello`/`Welcome` round trip) and follows it on the monotonic clock, so a step of the
//! agent's wall clock changes nothing until the next welcome anchors it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::{ClockOffset, UnixMillis};

/// How long until `hub_deadline` (a time on the hub's clock) when the hub's clock reads
/// `hub_now`; zero once it has passed.
pub fn time_left(hub_deadline: UnixMillis, hub_now: UnixMillis) -> Duration {
    Duration::from_millis(u64::try_from(hub_deadline.0.saturating_sub(hub_now.0)).unwrap_or(0))
}

/// The hub's clock as read at one welcome, tied to the monotonic clock: the hub stamped
/// `hub_time` between the hello leaving and the welcome arriving, so when the welcome
/// arrived its clock read about `hub_time` plus half the round trip, give or take half.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    hub_at: UnixMillis,
    at: Instant,
    uncertainty_ms: u32,
}

/// The hub's clock as the agent follows it, shared by the sync client (which anchors it at
/// every welcome), the command router and the health reporter. It runs on the monotonic
/// clock from the anchor, so a step of the agent's wall clock (NTP answering after boot, an
/// operator's `date -s`) changes nothing until the next welcome anchors it again.
#[derive(Debug, Default)]
pub struct HubClock {
    anchor: Mutex<Option<Anchor>>,
}

impl HubClock {
    /// Anchors the hub's clock: its welcome, stamped `hub_time`, arrived just now,
    /// `round_trip` after the hello left.
    pub fn observe(&self, hub_time: UnixMillis, round_trip: Duration) {
        let half = i64::try_from(round_trip.as_millis() / 2).unwrap_or(i64::MAX);
        let anchor = Anchor {
            hub_at: UnixMillis(hub_time.0.saturating_add(half)),
            at: Instant::now(),
            uncertainty_ms: u32::try_from(half).unwrap_or(u32::MAX),
        };
        *self.anchor.lock().unwrap_or_else(|p| p.into_inner()) = Some(anchor);
    }

    fn anchor(&self) -> Option<Anchor> {
        *self.anchor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hub's clock now, as the agent follows it; the agent's own clock before the first
    /// welcome.
    pub fn hub_now(&self) -> UnixMillis {
        match self.anchor() {
            Some(anchor) => {
                let elapsed = i64::try_from(anchor.at.elapsed().as_millis()).unwrap_or(i64::MAX);
                UnixMillis(anchor.hub_at.0.saturating_add(elapsed))
            }
            None => UnixMillis::now(),
        }
    }

    /// How far the agent's wall clock is from the hub's now (hub minus agent), for the health
    /// records and the log; `None` before the first welcome.
    pub fn offset(&self) -> Option<ClockOffset> {
        let anchor = self.anchor()?;
        let local = UnixMillis::now();
        Some(ClockOffset {
            offset_ms: self.hub_now().0.saturating_sub(local.0),
            uncertainty_ms: anchor.uncertainty_ms,
            measured_at: local,
        })
    }

    /// The monotonic instant at which `hub_deadline` (the hub's clock) passes.
    pub fn deadline(&self, hub_deadline: UnixMillis) -> Instant {
        let now = Instant::now();
        now.checked_add(time_left(hub_deadline, self.hub_now())).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn time_left_is_counted_on_the_hubs_clock() {
        let issued = UnixMillis(1_764_000_000_000);
        let expires = issued.plus_millis(60_000);
        assert_eq!(time_left(expires, issued), Duration::from_secs(60));
        assert_eq!(time_left(expires, expires), Duration::ZERO);
        assert_eq!(time_left(expires, expires.plus_millis(1)), Duration::ZERO);
        let far = time_left(UnixMillis(i64::MAX), UnixMillis(i64::MIN));
        assert_eq!(far, Duration::from_millis(i64::MAX as u64));
    }

    #[test]
    fn the_hubs_clock_is_followed_from_its_welcome_whatever_the_agents_reads() {
        for skew in [-3 * HOUR, 0, 3 * HOUR] {
            // The hub's clock reads the true time plus `skew` relative to ours (hours apart,
            // as for a Pi that booted during an outage); its welcome took 40 ms both ways.
            let hub_time = UnixMillis(UnixMillis::now().0 + skew);
            let clock = HubClock::default();
            clock.observe(hub_time, Duration::from_millis(40));
            let offset = clock.offset().expect("measured");
            assert!((offset.offset_ms - skew - 20).abs() < 1_000, "{skew}: {offset:?}");
            assert_eq!(offset.uncertainty_ms, 20);
            // A command the hub gave a minute, on its clock: a minute here too.
            let start = Instant::now();
            let left = clock.deadline(hub_time.plus_millis(60_000)).duration_since(start);
            assert!(left <= Duration::from_secs(60), "{skew}: {left:?}");
            assert!(left > Duration::from_secs(58), "{skew}: {left:?}");
            // One the hub says is over: over here.
            assert!(clock.deadline(hub_time.plus_millis(-1)) <= Instant::now());
        }
        // Before any welcome the agent's own clock stands in; garbage saturates.
        assert!(HubClock::default().offset().is_none());
        let absurd = HubClock::default();
        absurd.observe(UnixMillis(i64::MAX), Duration::MAX);
        assert_eq!(absurd.hub_now(), UnixMillis(i64::MAX));
        assert!(absurd.offset().is_some_and(|o| o.offset_ms > 0));
    }
}
