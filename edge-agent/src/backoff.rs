//! The one reconnect backoff of the agent: the printer link, the hub link and the cameras
//! all wait with it between attempts.
//!
//! Exponential from `min`, doubling after each failure up to `max`, with each wait drawn
//! between half and all of the current step ("equal jitter"): agents that lost the hub or a
//! printer together never retry in step, and no wait is ever longer than `max`. A success
//! resets it to `min`.

use std::time::Duration;

/// A jittered exponential backoff. Sans-IO: it computes waits, the caller sleeps.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The step the next wait is drawn from.
    step: Duration,
}

impl Backoff {
    /// Starts at `min` and grows to at most `max` (`max` below `min` counts as `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), step: min }
    }

    /// The wait before the next attempt, drawn from the current step; the step then doubles
    /// (up to `max`).
    pub fn next_wait(&mut self) -> Duration {
        self.next_wait_with(rand::random::<f64>())
    }

    /// As [`next_wait`](Backoff::next_wait), with the random draw given (`0.0..1.0`).
    fn next_wait_with(&mut self, draw: f64) -> Duration {
        let half = self.step / 2;
        let wait = half.saturating_add((self.step - half).mul_f64(draw.clamp(0.0, 1.0)));
        let wait = wait.min(self.step);
        self.step = self.step.saturating_mul(2).min(self.max);
        wait
    }

    /// The step the next wait is drawn from (the longest it can be).
    pub fn step(&self) -> Duration {
        self.step
    }

    /// After a success: the next failure waits about `min` again.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_step_doubles_after_each_failure_up_to_the_cap() {
        let mut backoff = Backoff::new(ms(100), ms(1_000));
        let steps: Vec<_> = (0..7)
            .map(|_| {
                let step = backoff.step();
                backoff.next_wait_with(1.0);
                step
            })
            .collect();
        assert_eq!(steps, [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000), ms(1_000)]);
    }

    #[test]
    fn a_wait_lies_between_half_and_all_of_its_step() {
        let mut low = Backoff::new(ms(100), ms(1_000));
        let mut high = low.clone();
        assert_eq!(low.next_wait_with(0.0), ms(50));
        assert_eq!(high.next_wait_with(1.0), ms(100));
        // Draws out of range are clamped, never longer than the step.
        assert_eq!(Backoff::new(ms(100), ms(100)).next_wait_with(7.0), ms(100));
        assert_eq!(Backoff::new(ms(100), ms(100)).next_wait_with(-1.0), ms(50));
        let mut real = Backoff::new(ms(100), ms(1_000));
        for _ in 0..1_000 {
            let step = real.step();
            let wait = real.next_wait();
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn waits_differ_between_agents() {
        let waits: std::collections::BTreeSet<_> =
            (0..20).map(|_| Backoff::new(ms(1_000), ms(1_000)).next_wait()).collect();
        assert!(waits.len() > 1, "twenty agents would retry in step: {waits:?}");
    }

    #[test]
    fn a_success_resets_the_step() {
        let mut backoff = Backoff::new(ms(100), ms(60_000));
        for _ in 0..10 {
            backoff.next_wait();
        }
        assert_eq!(backoff.step(), ms(60_000));
        backoff.reset();
        assert_eq!(backoff.step(), ms(100));
        assert!(backoff.next_wait() <= ms(100));
    }

    #[test]
    fn a_huge_cap_never_overflows() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::MAX);
        for _ in 0..200 {
            backoff.next_wait_with(1.0);
        }
        assert_eq!(backoff.step(), Duration::MAX);
    }
}
