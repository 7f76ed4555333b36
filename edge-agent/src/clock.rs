//! The agent's clock against the hub's.
//!
//! A Raspberry Pi has no real-time clock. Booted during an outage, before NTP answers, its
//! clock is wherever `fake-hwclock` left it (the last shutdown) or the epoch: hours or days
//! off. So nothing that decides whether to act compares a time from the hub with the
//! agent's clock:
//!
//! - **Command expiry** becomes a monotonic deadline when the command arrives: the time left
//!   is worked out in the hub's clock ([`HubClock::deadline`]).
//! - **The plate check** compares record sequence numbers, not times (see
//!   [`crate::commands`]).
//! - **Certificate renewal** compares the certificate's end with the hub's time as the agent
//!   estimates it ([`HubClock::hub_now`]); the hub issued the certificate on its clock.
//! - **The hub's TLS certificate** is accepted by an agent whose clock is before its start
//!   (see `sync::tls`): the pinned hub CA is the trust, and refusing would leave a Pi
//!   behind in time unable to reach the hub that tells it the time.
//!
//! The offset is measured from `Welcome.hub_time` and the `Hello`/`Welcome` round trip, once
//! per session, and reported in the agent's health records; the dashboard flags an agent
//! whose clock is more than a few seconds off.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::{ClockOffset, UnixMillis};

/// The offset of the agent's clock from the hub's, from one `Hello`/`Welcome` exchange: the
/// hub stamped `hub_time` between the hello leaving and the welcome arriving, so at
/// `received_at` its clock read about `hub_time` plus half the round trip, give or take half
/// the round trip.
pub fn measure(hub_time: UnixMillis, received_at: UnixMillis, round_trip: Duration) -> ClockOffset {
    let half = i64::try_from(round_trip.as_millis() / 2).unwrap_or(i64::MAX);
    ClockOffset {
        offset_ms: hub_time.0.saturating_add(half).saturating_sub(received_at.0),
        uncertainty_ms: u32::try_from(half).unwrap_or(u32::MAX),
        measured_at: received_at,
    }
}

/// How long until `hub_deadline` (a time on the hub's clock) when the hub's clock reads
/// `hub_now`; zero once it has passed.
pub fn time_left(hub_deadline: UnixMillis, hub_now: UnixMillis) -> Duration {
    Duration::from_millis(u64::try_from(hub_deadline.0.saturating_sub(hub_now.0)).unwrap_or(0))
}

/// The latest measured offset, shared by the sync client (which measures it), the command
/// executors and the health reporter.
#[derive(Debug, Default)]
pub struct HubClock {
    offset: Mutex<Option<ClockOffset>>,
}

impl HubClock {
    pub fn observe(&self, offset: ClockOffset) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) = Some(offset);
    }

    /// The latest measurement; `None` before the first welcome.
    pub fn offset(&self) -> Option<ClockOffset> {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hub's clock as the agent estimates it (its own clock before any measurement).
    pub fn hub_now(&self) -> UnixMillis {
        let offset = self.offset().map_or(0, |o| o.offset_ms);
        UnixMillis(UnixMillis::now().0.saturating_add(offset))
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
    fn an_agent_hours_behind_measures_a_positive_offset_within_half_the_round_trip() {
        let hub = UnixMillis(1_764_000_000_000);
        let behind = measure(hub, UnixMillis(hub.0 - 3 * HOUR + 20), Duration::from_millis(40));
        assert_eq!(behind.offset_ms, 3 * HOUR);
        assert_eq!(behind.uncertainty_ms, 20);
        let ahead = measure(hub, UnixMillis(hub.0 + 3 * HOUR), Duration::from_millis(0));
        assert_eq!(ahead.offset_ms, -3 * HOUR);
        // Garbage from the hub saturates instead of overflowing.
        let absurd = measure(UnixMillis(i64::MAX), UnixMillis(i64::MIN), Duration::MAX);
        assert_eq!(absurd.offset_ms, i64::MAX);
    }

    #[test]
    fn time_left_is_counted_on_the_hubs_clock() {
        let issued = UnixMillis(1_764_000_000_000);
        let expires = issued.plus_millis(60_000);
        assert_eq!(time_left(expires, issued), Duration::from_secs(60));
        assert_eq!(time_left(expires, expires), Duration::ZERO);
        assert_eq!(time_left(expires, expires.plus_millis(1)), Duration::ZERO);
        assert_eq!(
            time_left(UnixMillis(i64::MAX), UnixMillis(i64::MIN)),
            Duration::from_millis(i64::MAX as u64)
        );
    }

    #[test]
    fn a_deadline_ignores_how_far_the_agents_clock_is_off() {
        for skew in [-3 * HOUR, 0, 3 * HOUR] {
            let clock = HubClock::default();
            // The agent's clock is `skew` off the hub's: the hub's reads now − skew.
            clock.observe(ClockOffset {
                offset_ms: -skew,
                uncertainty_ms: 0,
                measured_at: UnixMillis::now(),
            });
            let hub_now = clock.hub_now();
            let start = Instant::now();
            let deadline = clock.deadline(hub_now.plus_millis(60_000));
            let left = deadline.duration_since(start);
            // Whole milliseconds: the clocks are read at that resolution.
            assert!(left <= Duration::from_millis(60_001), "skew {skew}: {left:?}");
            assert!(left > Duration::from_secs(59), "skew {skew}: {left:?}");
            // Without a measurement the agent's own clock stands in.
            assert!(
                HubClock::default().deadline(UnixMillis::now().plus_millis(-1)) <= Instant::now()
            );
        }
    }
}
