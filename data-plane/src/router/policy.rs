//! The router settings (DESIGN §5, LiteLLM's names) read once per config
//! into the values the router decides with, defaults filled in.
//!
//! | setting | default |
//! |---|---|
//! | `routing_strategy` | `simple-shuffle` (an unknown name too, logged at load) |
//! | `num_retries` | [`DEFAULT_NUM_RETRIES`] |
//! | `retry_policy` | none: `num_retries` for 429, 5xx, timeouts and connection errors, 0 for the rest |
//! | `allowed_fails` | [`DEFAULT_ALLOWED_FAILS`] per minute |
//! | `allowed_fails_policy` | none: `allowed_fails` for every class |
//! | `cooldown_time` | [`DEFAULT_COOLDOWN`] |
//! | `max_fallbacks` | [`DEFAULT_MAX_FALLBACKS`] |
//! | `lowest_latency_buffer` | 0 (only the fastest) |
//! | `enable_pre_call_checks` | off |

use std::time::Duration;

use sluice_proto::admin::v1::RouterSettings;

use super::classify::ErrorClass;

/// LiteLLM's default: two more attempts after the first.
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// LiteLLM's default: a deployment may fail three times a minute.
pub const DEFAULT_ALLOWED_FAILS: u32 = 3;
/// LiteLLM's default cooldown.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
/// LiteLLM's default bound on fallback groups per request.
pub const DEFAULT_MAX_FALLBACKS: u32 = 5;

/// How the next deployment is chosen among the usable ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    SimpleShuffle,
    LeastBusy,
    LatencyBased,
    UsageBased,
    CostBased,
}

impl Strategy {
    /// LiteLLM's names; `usage-based-routing-v2` is an alias. `None` for a
    /// name Sluice does not know.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Some(match name.trim() {
            "" | "simple-shuffle" => Strategy::SimpleShuffle,
            "least-busy" => Strategy::LeastBusy,
            "latency-based-routing" => Strategy::LatencyBased,
            "usage-based-routing" | "usage-based-routing-v2" => Strategy::UsageBased,
            "cost-based-routing" => Strategy::CostBased,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SimpleShuffle => "simple-shuffle",
            Strategy::LeastBusy => "least-busy",
            Strategy::LatencyBased => "latency-based-routing",
            Strategy::UsageBased => "usage-based-routing",
            Strategy::CostBased => "cost-based-routing",
        }
    }
}

/// What the router decides with.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub strategy: Strategy,
    /// Retries per error class ([`ErrorClass::index`]).
    pub(crate) retries: [u32; ErrorClass::ALL.len()],
    /// Failures per minute allowed before a cooldown, per class.
    pub(crate) allowed_fails: [u32; ErrorClass::ALL.len()],
    pub cooldown: Duration,
    /// The router's `timeout`, when set.
    pub timeout: Option<Duration>,
    pub max_fallbacks: usize,
    pub lowest_latency_buffer: f64,
    pub pre_call_checks: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_settings(&RouterSettings::default())
    }
}

impl Policy {
    pub fn from_settings(s: &RouterSettings) -> Policy {
        let num_retries = s.num_retries.unwrap_or(DEFAULT_NUM_RETRIES);
        let mut retries = [0; ErrorClass::ALL.len()];
        for class in ErrorClass::ALL {
            if class.retryable_by_default() {
                retries[class.index()] = num_retries;
            }
        }
        if let Some(p) = &s.retry_policy {
            override_by_class(
                &mut retries,
                [
                    p.bad_request_error_retries,
                    p.authentication_error_retries,
                    p.timeout_error_retries,
                    p.rate_limit_error_retries,
                    p.content_policy_violation_error_retries,
                    p.internal_server_error_retries,
                ],
            );
        }
        // A misconfigured deployment fails the same way every time.
        retries[ErrorClass::Misconfigured.index()] = 0;

        let allowed = s.allowed_fails.unwrap_or(DEFAULT_ALLOWED_FAILS);
        let mut allowed_fails = [allowed; ErrorClass::ALL.len()];
        if let Some(p) = &s.allowed_fails_policy {
            override_by_class(
                &mut allowed_fails,
                [
                    p.bad_request_error_allowed_fails,
                    p.authentication_error_allowed_fails,
                    p.timeout_error_allowed_fails,
                    p.rate_limit_error_allowed_fails,
                    p.content_policy_violation_error_allowed_fails,
                    p.internal_server_error_allowed_fails,
                ],
            );
        }

        Policy {
            strategy: Strategy::from_name(&s.routing_strategy).unwrap_or(Strategy::SimpleShuffle),
            retries,
            allowed_fails,
            cooldown: s
                .cooldown_time
                .as_ref()
                .and_then(duration)
                .unwrap_or(DEFAULT_COOLDOWN),
            timeout: s.timeout.as_ref().and_then(duration),
            max_fallbacks: s.max_fallbacks.unwrap_or(DEFAULT_MAX_FALLBACKS) as usize,
            lowest_latency_buffer: s
                .lowest_latency_buffer
                .filter(|b| b.is_finite() && *b >= 0.0)
                .unwrap_or(0.0),
            pre_call_checks: s.enable_pre_call_checks,
        }
    }

    /// This policy with another strategy.
    pub fn with_strategy(mut self, strategy: Strategy) -> Policy {
        self.strategy = strategy;
        self
    }

    /// How many more attempts a failure of `class` allows in one group.
    pub fn retries(&self, class: ErrorClass) -> u32 {
        self.retries[class.index()]
    }

    /// How many failures of `class` a deployment may have in a minute before
    /// it is cooled: it is cooled at the one after.
    pub fn allowed_fails(&self, class: ErrorClass) -> u32 {
        self.allowed_fails[class.index()]
    }
}

/// The classes each of LiteLLM's six policy entries covers, in the order
/// both policies list them: `BadRequest…`, `Authentication…` (401, 403 and
/// 404), `Timeout…`, `RateLimit…`, `ContentPolicyViolation…`,
/// `InternalServer…` (5xx, Anthropic's 529 among them, and connection
/// errors).
const POLICY_CLASSES: [&[ErrorClass]; 6] = [
    &[ErrorClass::BadRequest],
    &[ErrorClass::Authentication, ErrorClass::NotFound],
    &[ErrorClass::Timeout],
    &[ErrorClass::RateLimit],
    &[ErrorClass::ContentPolicy],
    &[
        ErrorClass::InternalServer,
        ErrorClass::Overloaded,
        ErrorClass::Connection,
    ],
];

/// Sets the per-class `values` a policy gives (in [`POLICY_CLASSES`]'
/// order), leaving the others as they are.
fn override_by_class(values: &mut [u32; ErrorClass::ALL.len()], policy: [Option<u32>; 6]) {
    for (classes, value) in POLICY_CLASSES.iter().zip(policy) {
        if let Some(value) = value {
            for c in *classes {
                values[c.index()] = value;
            }
        }
    }
}

/// A protobuf duration as a positive [`Duration`]; zero or negative is
/// "not set".
pub fn duration(d: &prost_types::Duration) -> Option<Duration> {
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(secs, nanos.min(999_999_999))).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::admin::v1::{AllowedFailsPolicy, RetryPolicy};

    #[test]
    fn defaults_are_litellms() {
        let p = Policy::default();
        assert_eq!(p.strategy, Strategy::SimpleShuffle);
        assert_eq!(p.retries(ErrorClass::RateLimit), 2);
        assert_eq!(p.retries(ErrorClass::InternalServer), 2);
        assert_eq!(p.retries(ErrorClass::Connection), 2);
        assert_eq!(p.retries(ErrorClass::Timeout), 2);
        assert_eq!(p.retries(ErrorClass::BadRequest), 0);
        assert_eq!(p.retries(ErrorClass::ContextWindow), 0);
        assert_eq!(p.retries(ErrorClass::Misconfigured), 0);
        assert_eq!(p.allowed_fails(ErrorClass::InternalServer), 3);
        assert_eq!(p.cooldown, DEFAULT_COOLDOWN);
        assert_eq!(p.max_fallbacks, 5);
        assert!(!p.pre_call_checks);
    }

    #[test]
    fn policies_override_per_class() {
        let s = RouterSettings {
            routing_strategy: "usage-based-routing-v2".into(),
            num_retries: Some(4),
            retry_policy: Some(RetryPolicy {
                rate_limit_error_retries: Some(1),
                bad_request_error_retries: Some(3),
                internal_server_error_retries: Some(0),
                ..Default::default()
            }),
            allowed_fails: Some(1),
            allowed_fails_policy: Some(AllowedFailsPolicy {
                timeout_error_allowed_fails: Some(10),
                ..Default::default()
            }),
            cooldown_time: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            max_fallbacks: Some(1),
            ..Default::default()
        };
        let p = Policy::from_settings(&s);
        assert_eq!(p.strategy, Strategy::UsageBased);
        assert_eq!(p.retries(ErrorClass::RateLimit), 1);
        assert_eq!(p.retries(ErrorClass::BadRequest), 3);
        assert_eq!(p.retries(ErrorClass::InternalServer), 0);
        assert_eq!(p.retries(ErrorClass::Connection), 0);
        assert_eq!(p.retries(ErrorClass::Timeout), 4);
        assert_eq!(p.allowed_fails(ErrorClass::Timeout), 10);
        assert_eq!(p.allowed_fails(ErrorClass::InternalServer), 1);
        assert_eq!(p.cooldown, Duration::from_secs(30));
        assert_eq!(p.max_fallbacks, 1);
    }

    #[test]
    fn strategy_names() {
        for s in [
            Strategy::SimpleShuffle,
            Strategy::LeastBusy,
            Strategy::LatencyBased,
            Strategy::UsageBased,
            Strategy::CostBased,
        ] {
            assert_eq!(Strategy::from_name(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::from_name("fastest"), None);
    }
}
