//! What the router knows about each deployment on this data plane: requests
//! in flight, recent latency, this minute's requests and tokens, failures,
//! and cooldowns (its own and the fleet's). Atomics only, shared by every
//! worker thread: the request path never takes a lock for them.
//!
//! Time is unix milliseconds, passed in by the caller ([`now_ms`] in
//! production), so every decision here is a pure function of (state, time)
//! and tests drive the clock.
//!
//! Minutes are wall-clock minutes (`unix_ms / 60_000`), as LiteLLM counts
//! `rpm`/`tpm` and `allowed_fails`. A counter belongs to the minute stored
//! beside it; the first use in a new minute resets it. The reset is a
//! compare-and-swap on the minute, then stores of zero: a count landing
//! between the two is lost, which only ever under-counts by the requests of
//! that instant.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::classify::{ErrorClass, Failure};
use super::policy::Policy;

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The minute `ms` falls in.
pub fn minute_of(ms: u64) -> u64 {
    ms / 60_000
}

/// Weight of the newest sample in the latency average: 1/4, so a
/// deployment that turns slow is noticed within a handful of requests.
const EWMA_SHIFT: u32 = 2;

/// Why a deployment is cooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CooldownSource {
    /// This data plane saw it fail.
    Own,
    /// Another data plane did, and the control plane said so.
    Fleet,
}

/// One deployment's routing state.
#[derive(Debug)]
pub struct DeploymentState {
    id: Box<str>,
    in_flight: AtomicU32,
    /// Moving average in microseconds; 0 until the first sample.
    latency_us: AtomicU64,
    samples: AtomicU64,
    minute: AtomicU64,
    requests: AtomicU64,
    tokens: AtomicU64,
    fail_minute: AtomicU64,
    fails: [AtomicU32; ErrorClass::ALL.len()],
    own_until: AtomicU64,
    fleet_until: AtomicU64,
    /// Counters for `/debug/routing`.
    attempts: AtomicU64,
    failures: AtomicU64,
    cooldowns: AtomicU64,
}

/// A cooldown that started or got longer: what the fleet is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooled {
    pub until_ms: u64,
    pub class: ErrorClass,
}

impl DeploymentState {
    pub fn new(id: &str) -> DeploymentState {
        DeploymentState {
            id: id.into(),
            in_flight: AtomicU32::new(0),
            latency_us: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            minute: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            fail_minute: AtomicU64::new(0),
            fails: std::array::from_fn(|_| AtomicU32::new(0)),
            own_until: AtomicU64::new(0),
            fleet_until: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cooldowns: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// The latency average, `None` before the first sample.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_us.load(Relaxed) {
            0 if self.samples.load(Relaxed) == 0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Requests started and tokens used in the minute of `now`.
    pub fn minute_usage(&self, now: u64) -> (u64, u64) {
        if self.minute.load(Relaxed) != minute_of(now) {
            return (0, 0);
        }
        (self.requests.load(Relaxed), self.tokens.load(Relaxed))
    }

    /// Until when it is cooling and why, if it is at `now`.
    pub fn cooling(&self, now: u64) -> Option<(u64, CooldownSource)> {
        let own = self.own_until.load(Relaxed);
        let fleet = self.fleet_until.load(Relaxed);
        if own > now && own >= fleet {
            Some((own, CooldownSource::Own))
        } else if fleet > now {
            Some((fleet, CooldownSource::Fleet))
        } else {
            None
        }
    }

    pub fn is_cooling(&self, now: u64) -> bool {
        self.own_until
            .load(Relaxed)
            .max(self.fleet_until.load(Relaxed))
            > now
    }

    /// Whether this minute's requests or tokens reached the deployment's own
    /// `rpm` / `tpm` (0: no cap).
    pub fn at_cap(&self, rpm: u64, tpm: u64, now: u64) -> bool {
        let (requests, tokens) = self.minute_usage(now);
        (rpm > 0 && requests >= rpm) || (tpm > 0 && tokens >= tpm)
    }

    fn roll_minute(&self, now: u64) {
        let minute = minute_of(now);
        let held = self.minute.load(Relaxed);
        if held != minute
            && self
                .minute
                .compare_exchange(held, minute, Relaxed, Relaxed)
                .is_ok()
        {
            self.requests.store(0, Relaxed);
            self.tokens.store(0, Relaxed);
        }
    }

    /// An attempt starts: one more in flight, one more request this minute,
    /// `tokens` (the prompt's estimate) more tokens. The returned guard
    /// takes it out of flight when dropped.
    pub fn start(self: &std::sync::Arc<Self>, now: u64, tokens: u64) -> InFlight {
        self.roll_minute(now);
        self.requests.fetch_add(1, Relaxed);
        self.tokens.fetch_add(tokens, Relaxed);
        self.attempts.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(std::sync::Arc::clone(self))
    }

    /// Tokens the answer used beyond the prompt's estimate (counted against
    /// `tpm` this minute).
    pub fn add_tokens(&self, now: u64, tokens: u64) {
        self.roll_minute(now);
        self.tokens.fetch_add(tokens, Relaxed);
    }

    /// A latency sample: time to first byte for streams, to the answer's
    /// headers otherwise.
    pub fn record_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let first = self.samples.fetch_add(1, Relaxed) == 0;
        let _ = self.latency_us.fetch_update(Relaxed, Relaxed, |old| {
            Some(if first || old == 0 {
                sample
            } else if sample >= old {
                old + ((sample - old) >> EWMA_SHIFT)
            } else {
                old - ((old - sample) >> EWMA_SHIFT)
            })
        });
    }

    /// A failed attempt: counts it, and cools the deployment when the rule
    /// says so (DESIGN §5): at once for 429, 401/403 and 404; after more than
    /// the policy's `allowed_fails` failures of that class in the minute for
    /// the others that are the deployment's fault. For `cooldown_time`, or
    /// the upstream's `Retry-After` when longer. A cooldown never gets
    /// shorter. Returns the cooldown when it started or got longer.
    pub fn record_failure(&self, failure: &Failure, policy: &Policy, now: u64) -> Option<Cooled> {
        self.failures.fetch_add(1, Relaxed);
        let class = failure.class;
        let cool = if class.cools_at_once() {
            true
        } else if class.counts_as_failure() {
            let minute = minute_of(now);
            let held = self.fail_minute.load(Relaxed);
            if held != minute
                && self
                    .fail_minute
                    .compare_exchange(held, minute, Relaxed, Relaxed)
                    .is_ok()
            {
                for f in &self.fails {
                    f.store(0, Relaxed);
                }
            }
            let fails = self.fails[class.index()].fetch_add(1, Relaxed) + 1;
            fails > policy.allowed_fails(class)
        } else {
            false
        };
        if !cool {
            return None;
        }
        let length = failure
            .retry_after
            .map_or(policy.cooldown, |r| r.max(policy.cooldown));
        let until = now.saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX));
        let before = self.own_until.fetch_max(until, Relaxed);
        if until <= before {
            return None;
        }
        self.cooldowns.fetch_add(1, Relaxed);
        // The fleet already knows a longer one: nothing to tell it.
        if until <= self.fleet_until.load(Relaxed) {
            return None;
        }
        Some(Cooled {
            until_ms: until,
            class,
        })
    }

    /// Another data plane cooled this deployment until `until` (unix ms on
    /// this data plane's clock). Never shortens one in force.
    pub fn fleet_cooldown(&self, until: u64) -> bool {
        self.fleet_until.fetch_max(until, Relaxed) < until
    }

    /// `(attempts, failures, cooldowns entered)` since this state began.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.attempts.load(Relaxed),
            self.failures.load(Relaxed),
            self.cooldowns.load(Relaxed),
        )
    }

    /// Failures of `class` counted in the minute of `now`.
    pub fn fails(&self, class: ErrorClass, now: u64) -> u32 {
        if self.fail_minute.load(Relaxed) != minute_of(now) {
            return 0;
        }
        self.fails[class.index()].load(Relaxed)
    }
}

impl AsRef<DeploymentState> for DeploymentState {
    fn as_ref(&self) -> &DeploymentState {
        self
    }
}

/// One attempt in flight on a deployment, until dropped (with the answer's
/// body, for streams).
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<DeploymentState>);

impl InFlight {
    pub fn state(&self) -> &DeploymentState {
        &self.0
    }
}

/// An answer's body carries its attempt's mark, so a stream counts as in
/// flight until it ends.
impl crate::body::Carried for InFlight {}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::classify::without_answer;
    use std::sync::Arc;

    const T0: u64 = 1_700_000_000_000 / 60_000 * 60_000;

    fn failure(class: ErrorClass, retry_after: Option<u64>) -> Failure {
        Failure {
            retry_after: retry_after.map(Duration::from_secs),
            ..without_answer(class)
        }
    }

    #[test]
    fn allowed_fails_then_cooldown_then_back() {
        let s = DeploymentState::new("d");
        let p = Policy::default(); // 3 allowed, 5 s
        for _ in 0..3 {
            assert_eq!(
                s.record_failure(&failure(ErrorClass::InternalServer, None), &p, T0),
                None
            );
        }
        assert!(!s.is_cooling(T0));
        let cooled = s
            .record_failure(&failure(ErrorClass::InternalServer, None), &p, T0 + 10)
            .expect("the fourth cools");
        assert_eq!(cooled.until_ms, T0 + 10 + 5_000);
        assert_eq!(s.cooling(T0 + 20), Some((T0 + 5_010, CooldownSource::Own)));
        assert!(!s.is_cooling(T0 + 5_010));
    }

    #[test]
    fn failures_are_counted_per_minute_and_class() {
        let s = DeploymentState::new("d");
        let p = Policy::default();
        for _ in 0..3 {
            s.record_failure(&failure(ErrorClass::InternalServer, None), &p, T0);
        }
        assert_eq!(s.fails(ErrorClass::InternalServer, T0), 3);
        // Another class has its own count.
        assert_eq!(
            s.record_failure(&failure(ErrorClass::Timeout, None), &p, T0),
            None
        );
        // A new minute starts afresh.
        assert_eq!(
            s.record_failure(&failure(ErrorClass::InternalServer, None), &p, T0 + 60_000),
            None
        );
        assert_eq!(s.fails(ErrorClass::InternalServer, T0 + 60_000), 1);
    }

    #[test]
    fn some_answers_cool_at_once_and_others_never() {
        let p = Policy::default();
        for class in [
            ErrorClass::RateLimit,
            ErrorClass::Authentication,
            ErrorClass::NotFound,
        ] {
            let s = DeploymentState::new("d");
            assert!(s.record_failure(&failure(class, None), &p, T0).is_some());
        }
        for class in [
            ErrorClass::BadRequest,
            ErrorClass::ContextWindow,
            ErrorClass::ContentPolicy,
            ErrorClass::Misconfigured,
        ] {
            let s = DeploymentState::new("d");
            for _ in 0..10 {
                assert!(s.record_failure(&failure(class, None), &p, T0).is_none());
            }
            assert!(!s.is_cooling(T0));
        }
    }

    #[test]
    fn retry_after_lengthens_and_nothing_shortens() {
        let s = DeploymentState::new("d");
        let p = Policy::default();
        let long = s
            .record_failure(&failure(ErrorClass::RateLimit, Some(30)), &p, T0)
            .expect("cooled");
        assert_eq!(
            long.until_ms,
            T0 + 30_000,
            "Retry-After beyond cooldown_time"
        );
        // A later, shorter one leaves it as it was and is not news.
        assert_eq!(
            s.record_failure(&failure(ErrorClass::RateLimit, Some(1)), &p, T0 + 1_000),
            None
        );
        assert_eq!(s.cooling(T0 + 29_000).map(|c| c.0), Some(T0 + 30_000));
        // A Retry-After below cooldown_time does not shorten cooldown_time.
        let s = DeploymentState::new("d");
        let c = s
            .record_failure(&failure(ErrorClass::RateLimit, Some(1)), &p, T0)
            .expect("cooled");
        assert_eq!(c.until_ms, T0 + 5_000);
    }

    #[test]
    fn fleet_cooldowns() {
        let s = DeploymentState::new("d");
        let p = Policy::default();
        assert!(s.fleet_cooldown(T0 + 10_000));
        assert!(!s.fleet_cooldown(T0 + 5_000), "never shortened");
        assert_eq!(s.cooling(T0), Some((T0 + 10_000, CooldownSource::Fleet)));
        // Its own shorter cooldown is not reported: the fleet knows longer.
        assert_eq!(
            s.record_failure(&failure(ErrorClass::RateLimit, None), &p, T0),
            None
        );
        assert!(!s.is_cooling(T0 + 10_000));
    }

    #[test]
    fn minute_usage_and_caps() {
        let s = Arc::new(DeploymentState::new("d"));
        {
            let _a = s.start(T0, 100);
            let _b = s.start(T0 + 1, 50);
            assert_eq!(s.in_flight(), 2);
            assert_eq!(s.minute_usage(T0 + 2), (2, 150));
            assert!(s.at_cap(2, 0, T0 + 2));
            assert!(s.at_cap(0, 150, T0 + 2));
            assert!(!s.at_cap(3, 151, T0 + 2));
            assert!(!s.at_cap(0, 0, T0 + 2));
        }
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.minute_usage(T0 + 60_000), (0, 0));
        let _c = s.start(T0 + 60_000, 1);
        assert_eq!(s.minute_usage(T0 + 60_001), (1, 1));
    }

    #[test]
    fn latency_average_moves_towards_samples() {
        let s = DeploymentState::new("d");
        assert_eq!(s.latency(), None);
        s.record_latency(Duration::from_millis(100));
        assert_eq!(s.latency(), Some(Duration::from_millis(100)));
        for _ in 0..20 {
            s.record_latency(Duration::from_millis(500));
        }
        let l = s.latency().unwrap();
        assert!(
            l > Duration::from_millis(490) && l <= Duration::from_millis(500),
            "{l:?}"
        );
        for _ in 0..20 {
            s.record_latency(Duration::from_millis(10));
        }
        assert!(s.latency().unwrap() < Duration::from_millis(20));
    }
}
