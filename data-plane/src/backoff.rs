//! The crate's one backoff: exponential, with full jitter (the n-th wait is
//! drawn uniformly from `[0, min(max, initial × 2ⁿ)]`), so that a fleet
//! waiting on the same failure does not come back in lockstep. The config
//! stream waits it out between rounds of connection attempts ([`Backoff`]);
//! a retry loop draws its n-th delay directly ([`delay`]).
//!
//! A leaf: it imports nothing of this crate.

use std::time::Duration;

/// The bounds of a backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The ceiling never grows beyond this.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// The config stream's: from 100 ms up to 15 s.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(15),
        }
    }
}

impl BackoffPolicy {
    /// The ceiling the `attempt`-th wait (from 0) is drawn under:
    /// `min(max, initial × 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The `attempt`-th wait (from 0), drawn with full jitter under
    /// [`BackoffPolicy::ceiling`].
    pub fn delay(&self, attempt: u32) -> Duration {
        jitter(self.ceiling(attempt))
    }
}

/// The `attempt`-th retry delay (from 0) with full jitter, between zero and
/// `min(max, initial × 2^attempt)`: [`BackoffPolicy::delay`] without a
/// policy value.
pub fn delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    BackoffPolicy { initial, max }.delay(attempt)
}

/// A uniform draw from `[0, ceiling]`.
fn jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

/// A backoff that counts its own attempts: each wait's ceiling doubles
/// until it reaches `max`, and a success resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The ceiling the next wait is drawn under.
    pub fn ceiling(&self) -> Duration {
        self.policy.ceiling(self.attempt)
    }

    /// The next wait; each call doubles the ceiling until it reaches `max`.
    pub fn next_delay(&mut self) -> Duration {
        let wait = self.policy.delay(self.attempt);
        // Past 2^31 × initial the ceiling is pinned at max anyway.
        self.attempt = (self.attempt + 1).min(31);
        wait
    }

    /// After a success: the next wait is short again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound_and_resets() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(15),
        };
        let mut backoff = Backoff::new(policy);
        let mut ceilings = Vec::new();
        for _ in 0..100 {
            ceilings.push(backoff.ceiling());
            let wait = backoff.next_delay();
            assert!(wait <= *ceilings.last().expect("pushed"));
            assert!(wait <= policy.max);
        }
        assert_eq!(ceilings[0], Duration::from_millis(100));
        assert_eq!(ceilings[1], Duration::from_millis(200));
        assert_eq!(ceilings[7], Duration::from_millis(12_800));
        assert!(ceilings[8..].iter().all(|&c| c == policy.max));
        assert!(ceilings.windows(2).all(|w| w[0] <= w[1]));
        backoff.reset();
        assert_eq!(backoff.ceiling(), policy.initial);
    }

    #[test]
    fn the_nth_delay_is_bounded_by_its_ceiling() {
        let (initial, max) = (Duration::from_millis(10), Duration::from_secs(1));
        for attempt in [0, 1, 2, 5, 6, 7, 31, 32, 1000, u32::MAX] {
            let ceiling = BackoffPolicy { initial, max }.ceiling(attempt);
            assert!(ceiling <= max);
            for _ in 0..50 {
                assert!(delay(initial, max, attempt) <= ceiling, "{attempt}");
            }
        }
        assert_eq!(
            BackoffPolicy { initial, max }.ceiling(3),
            Duration::from_millis(80)
        );
        assert_eq!(BackoffPolicy { initial, max }.ceiling(7), max);
        assert_eq!(delay(Duration::ZERO, max, 3), Duration::ZERO);
    }

    #[test]
    fn delays_are_spread_rather_than_fixed() {
        let draws: std::collections::HashSet<Duration> = (0..20)
            .map(|_| delay(Duration::from_secs(1), Duration::from_secs(1), 0))
            .collect();
        assert!(draws.len() > 1, "full jitter draws differ");
    }
}
