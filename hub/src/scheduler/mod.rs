//! The scheduler's decisions, pure (issue 21, begun): which occurrences of a job are due
//! (with its misfire policy), and who may run one across hub replicas. Every time here is the
//! database's clock (PostgreSQL's `clock_timestamp()`), never a replica's own, so a replica
//! whose clock is off decides like the others; see `docs/research/replicas.md`.
//!
//! An occurrence is claimed by a unique `(job, occurrence)` record holding a lease and a
//! fencing token (from a sequence: every claim or takeover gets a larger one). A holder renews
//! its lease while it runs; when a lease lapses (its holder killed, or frozen past it) another
//! replica takes the occurrence over with a new token. A side effect is written only when the
//! token it carries is still the occurrence's ([`may_commit`]), in the same transaction, so a
//! frozen holder that wakes up cannot act twice.

pub mod cron;
pub mod driver;
pub mod jobs;

pub use cron::CronSchedule;

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// By a cron expression in a time zone.
    Cron(Box<CronSchedule>),
    /// Every `period_ms`, from `start` (Unix ms).
    Every { start: i64, period_ms: i64 },
    /// Once, at `at`.
    Once { at: i64 },
}

/// What to do with occurrences missed while no replica ran (all stopped, the database away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Run the latest missed occurrence once, skip the earlier ones.
    RunLatest,
    /// Run every missed occurrence, oldest first, at most `MAX_CATCH_UP` of them.
    RunAll,
    /// Skip them all: wait for the next one.
    Skip,
}

impl Misfire {
    pub const ALL: [Misfire; 3] = [Misfire::RunLatest, Misfire::RunAll, Misfire::Skip];

    pub fn name(self) -> &'static str {
        match self {
            Misfire::RunLatest => "run_latest",
            Misfire::RunAll => "run_all",
            Misfire::Skip => "skip",
        }
    }

    pub fn parse(name: &str) -> Option<Misfire> {
        Misfire::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The most missed occurrences a `RunAll` job catches up on at once.
pub const MAX_CATCH_UP: usize = 100;

impl Schedule {
    /// The first occurrence strictly after `after`, if any.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match self {
            Schedule::Cron(cron) => cron.next_after(after),
            &Schedule::Every { start, period_ms } => {
                if period_ms <= 0 {
                    return None;
                }
                if after < start {
                    return Some(start);
                }
                let n = (after - start) / period_ms + 1;
                start.checked_add(n.checked_mul(period_ms)?)
            }
            &Schedule::Once { at } => (at > after).then_some(at),
        }
    }

    /// The newest occurrence at or before `at`, if any.
    pub fn at_or_before(&self, at: i64) -> Option<i64> {
        match self {
            Schedule::Cron(cron) => cron.at_or_before(at),
            &Schedule::Every { start, period_ms } => {
                if period_ms <= 0 || at < start {
                    return None;
                }
                Some(start + (at - start) / period_ms * period_ms)
            }
            &Schedule::Once { at: once } => (once <= at).then_some(once),
        }
    }
}

/// The occurrences due at `now` for a job whose latest occurrence claimed so far is `last`
/// (`None`: never run; it then starts with what falls due from `created`), by its misfire
/// policy, oldest first. An occurrence is due when its time has come; "missed" ones are
/// those older than the newest due one. The walk goes back from `now`, so a job stopped for
/// years costs no more than `MAX_CATCH_UP` steps.
pub fn due(
    schedule: &Schedule,
    misfire: Misfire,
    created: i64,
    last: Option<i64>,
    now: i64,
) -> Vec<i64> {
    let after = last.unwrap_or(created.saturating_sub(1));
    let mut pending = Vec::new();
    let mut at = now;
    while pending.len() <= MAX_CATCH_UP {
        let Some(occurrence) = schedule.at_or_before(at) else { break };
        if occurrence <= after {
            break;
        }
        pending.push(occurrence);
        at = occurrence - 1;
    }
    pending.reverse();
    match misfire {
        Misfire::RunAll => {
            // Newest last; when more were missed than are caught up on, the newest are kept.
            let extra = pending.len().saturating_sub(MAX_CATCH_UP);
            pending.drain(..extra);
            pending
        }
        Misfire::RunLatest => pending.pop().into_iter().collect(),
        Misfire::Skip => match pending.last() {
            // Only an occurrence that is due right now (not a missed one) runs; "right now"
            // is within one tolerance of its time.
            Some(&newest) if now - newest <= ON_TIME_MS => vec![newest],
            _ => Vec::new(),
        },
    }
}

/// How late an occurrence may start and still be "on time" for `Misfire::Skip`.
pub const ON_TIME_MS: i64 = 60_000;

/// An occurrence's claim, as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The replica running it.
    pub holder: String,
    /// The fencing token: larger for every claim or takeover.
    pub fence: i64,
    /// Until when the holder's lease runs (the database's clock).
    pub lease_until: i64,
    pub state: ClaimState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    Running,
    /// Ended, with a result (success or failure): never run again.
    Ended,
}

/// What a replica does about one due occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody has it: insert the claim (the unique key decides between replicas racing).
    Claim,
    /// Its holder's lease is alive: leave it.
    Leave,
    /// It is ours and running: renew the lease.
    Renew,
    /// Its holder's lease lapsed: take it over, conditionally on the fence still being this
    /// one (so two replicas taking over at once cannot both win).
    TakeOver { stale_fence: i64 },
    /// It ended: nothing to do.
    Ended,
}

/// What replica `me` does about an occurrence whose claim is `claim`, at `now`.
pub fn decide(claim: Option<&Claim>, me: &str, now: i64) -> Decision {
    match claim {
        None => Decision::Claim,
        Some(claim) if claim.state == ClaimState::Ended => Decision::Ended,
        Some(claim) if claim.lease_until > now => {
            if claim.holder == me {
                Decision::Renew
            } else {
                Decision::Leave
            }
        }
        Some(claim) => Decision::TakeOver { stale_fence: claim.fence },
    }
}

/// Whether a side effect carrying `fence` may be written for an occurrence whose claim now
/// holds `current`: only by the current holder, and only while it runs.
pub fn may_commit(fence: i64, current: Option<&Claim>) -> bool {
    current.is_some_and(|c| c.fence == fence && c.state == ClaimState::Running)
}

/// The id a command issued by an occurrence gets: the same for every run of that
/// occurrence, so a second attempt after a takeover is the same command, not another.
pub fn effect_id(job: &str, occurrence: i64, n: u32) -> String {
    format!("sched:{job}:{occurrence}:{n}")
}

/// The id of the `n`th command an occurrence issues (a manual run's occurrences are kept
/// apart from scheduled ones): the first 16 bytes of the SHA-256 of its effect id, so a
/// replica that takes a run over issues the same command, which the hub stores once and
/// the agent runs once.
pub fn command_id(job: &str, occurrence: i64, manual: bool, n: u32) -> [u8; 16] {
    use sha2::Digest as _;
    let kind = if manual { "manual" } else { "scheduled" };
    let digest = sha2::Sha256::digest(format!("kitt {kind} {}", effect_id(job, occurrence, n)));
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn intervals_and_one_offs_give_their_next_occurrence() {
        let every = Schedule::Every { start: 1_000, period_ms: MIN };
        assert_eq!(every.next_after(0), Some(1_000));
        assert_eq!(every.next_after(1_000), Some(1_000 + MIN));
        assert_eq!(every.next_after(1_000 + MIN - 1), Some(1_000 + MIN));
        assert_eq!(Schedule::Every { start: 0, period_ms: 0 }.next_after(5), None);
        assert_eq!(Schedule::Every { start: 0, period_ms: i64::MAX }.next_after(i64::MAX), None);
        let once = Schedule::Once { at: 5_000 };
        assert_eq!(once.next_after(4_999), Some(5_000));
        assert_eq!(once.next_after(5_000), None);
    }

    #[test]
    fn missed_occurrences_follow_the_misfire_policy() {
        let every = Schedule::Every { start: 0, period_ms: MIN };
        // Last ran at minute 2; now it is minute 5 and a bit: 3, 4 and 5 are due.
        let now = 5 * MIN + 10;
        assert_eq!(
            due(&every, Misfire::RunAll, 0, Some(2 * MIN), now),
            [3 * MIN, 4 * MIN, 5 * MIN]
        );
        assert_eq!(due(&every, Misfire::RunLatest, 0, Some(2 * MIN), now), [5 * MIN]);
        assert_eq!(due(&every, Misfire::Skip, 0, Some(2 * MIN), now), [5 * MIN]);
        // Started 90 s after the newest of a ten-minute job: Skip runs nothing until the next.
        let ten = Schedule::Every { start: 0, period_ms: 10 * MIN };
        let late = 10 * MIN + 90 * 1000;
        assert_eq!(due(&ten, Misfire::Skip, 0, Some(0), late), Vec::<i64>::new());
        assert_eq!(due(&ten, Misfire::RunLatest, 0, Some(0), late), [10 * MIN]);
        // Nothing due yet.
        assert!(due(&every, Misfire::RunAll, 0, Some(5 * MIN), now).is_empty());
        // A new job starts from its creation, not from the epoch.
        assert_eq!(due(&every, Misfire::RunAll, 4 * MIN + 1, None, now), [5 * MIN]);
        // Years down: the catch-up is bounded and keeps the newest.
        let caught = due(&every, Misfire::RunAll, 0, Some(0), 1_000_000 * MIN);
        assert_eq!(caught.len(), MAX_CATCH_UP);
        assert_eq!(caught.last(), Some(&(1_000_000 * MIN)));
        // A one-off runs once.
        let once = Schedule::Once { at: 3 * MIN };
        assert_eq!(due(&once, Misfire::RunAll, 0, None, now), [3 * MIN]);
        assert!(due(&once, Misfire::RunAll, 0, Some(3 * MIN), now).is_empty());
    }

    fn claim(holder: &str, fence: i64, lease_until: i64, state: ClaimState) -> Claim {
        Claim { holder: holder.into(), fence, lease_until, state }
    }

    #[test]
    fn a_lapsed_lease_is_taken_over_and_the_old_holder_can_no_longer_commit() {
        assert_eq!(decide(None, "a", 0), Decision::Claim);
        let held = claim("a", 7, 1_000, ClaimState::Running);
        assert_eq!(decide(Some(&held), "a", 500), Decision::Renew);
        assert_eq!(decide(Some(&held), "b", 500), Decision::Leave);
        // A frozen past its lease: B takes over with a new fence.
        assert_eq!(decide(Some(&held), "b", 1_000), Decision::TakeOver { stale_fence: 7 });
        let taken = claim("b", 8, 2_000, ClaimState::Running);
        // A wakes up and tries to write its side effect with its old fence: refused.
        assert!(!may_commit(7, Some(&taken)));
        assert!(may_commit(8, Some(&taken)));
        // Once ended, nobody runs it again, nor writes for it.
        let ended = claim("b", 8, 2_000, ClaimState::Ended);
        assert_eq!(decide(Some(&ended), "a", 10_000), Decision::Ended);
        assert!(!may_commit(8, Some(&ended)));
        assert!(!may_commit(8, None));
    }

    #[test]
    fn an_occurrence_names_its_effects_the_same_on_every_attempt() {
        assert_eq!(command_id("lights", 60_000, false, 0), command_id("lights", 60_000, false, 0));
        assert_ne!(command_id("lights", 60_000, false, 0), command_id("lights", 60_000, true, 0));
        assert_ne!(command_id("lights", 60_000, false, 0), command_id("lights", 120_000, false, 0));
        assert_ne!(command_id("lights", 60_000, false, 0), command_id("light", 60_000, false, 0));
        assert_eq!(effect_id("dispatch", 120_000, 0), effect_id("dispatch", 120_000, 0));
        assert_ne!(effect_id("dispatch", 120_000, 0), effect_id("dispatch", 180_000, 0));
        assert_ne!(effect_id("dispatch", 120_000, 0), effect_id("dispatch", 120_000, 1));
    }
}
