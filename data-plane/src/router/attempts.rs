//! The attempt loop (DESIGN §5): pick a deployment, call it, and on failure
//! retry, cool, and fall back, until an answer or nothing is left.
//!
//! - Retries: after a failure of class `c`, up to `retries(c)` more
//!   attempts in the same group ([`Policy::retries`]), each on a deployment
//!   not yet tried when one is usable, else on one already tried after a
//!   backoff (full jitter, [`RETRY_BACKOFF`]) or the upstream's `Retry-After`
//!   when it gave one. A wait that would end past the deadline ends the
//!   group's retries.
//! - Fallbacks: a group left with a retryable failure, a 401/404, or no
//!   usable deployment moves to the next group of [`plan::fallbacks`]; the
//!   caller's access is checked on each, and one it may not use is skipped
//!   without being called. At most `max_fallbacks` groups after the first.
//!   A bad request (other 4xx) or a misconfigured deployment ends the loop:
//!   another group would fail the same way.
//! - Deadline: the router's `timeout` (else [`DEFAULT_TIMEOUT`]) bounds the
//!   whole request; each attempt gets its deployment's `timeout` (else the
//!   router's), cut to what is left.
//! - Bound: at most `1 + retries` attempts per group tried, and
//!   `1 + max_fallbacks` groups; nothing below retries by itself.
//!
//! The loop is generic over the attempt (a closure) and its error (anything
//! that can say its [`Failure`]), so unit tests drive it without sockets.

use std::future::Future;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use super::classify::{ErrorClass, Failure};
use super::pick::{Ask, Tried, Unavailable, pick};
use super::plan::{self, FallbackKind, RequestFallbacks};
use super::policy::{Policy, duration};
use super::state::{Cooled, InFlight};
use super::table::Table;
use crate::backoff::BackoffPolicy;
use crate::config::snapshot::{Config, ModelGroup, ResolvedDeployment};

/// How long a request may take, all attempts included, when the router
/// settings set no `timeout`: long generations take minutes, and LiteLLM's
/// default is the same 600 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The backoff before retrying a deployment already tried (the crate's one
/// backoff, [`crate::backoff`]): 50 ms doubled per retry up to 1 s, drawn
/// with full jitter.
pub const RETRY_BACKOFF: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(50),
    max: Duration::from_secs(1),
};
pub const FIRST_RETRY_DELAY: Duration = RETRY_BACKOFF.initial;

/// An error an attempt can fail with: it says what kind of failure it was.
pub trait AttemptError {
    fn failure(&self) -> Failure;
}

/// What the loop tells the outside (metrics, the fleet), as it happens.
pub trait Events {
    fn attempt(&self, _deployment: &str) {}
    fn failed(&self, _deployment: &str, _class: ErrorClass) {}
    fn retry(&self, _deployment: &str) {}
    /// This data plane cooled `deployment` (the fleet is to be told).
    fn cooled(&self, _deployment: &str, _cooled: Cooled) {}
    fn fallback(&self, _from: &str, _to: &str, _kind: FallbackKind) {}
    /// A fallback the caller may not use was skipped, not called.
    fn fallback_denied(&self, _from: &str, _to: &str) {}
}

/// No events wanted.
impl Events for () {}

/// What a request brings to the loop.
pub struct Request<'r, 'c> {
    pub config: &'c Config,
    /// The name the client asked for.
    pub requested: &'r str,
    pub group: &'c ModelGroup,
    pub fallbacks: &'r RequestFallbacks,
    /// The prompt's estimated tokens.
    pub prompt_tokens: u64,
    /// The group a fallback name resolves to when the caller may use it
    /// (DESIGN §3.4); `None` skips it.
    pub allowed: &'r (dyn Fn(&str) -> Option<&'c ModelGroup> + Sync),
    /// The deployments the request may use at all, when not every one may
    /// (a Responses request continuing a stored response needs an upstream
    /// that keeps state); `None`: every one.
    pub eligible: Option<&'r (dyn Fn(&ResolvedDeployment) -> bool + Sync)>,
}

/// One attempt to make.
pub struct Attempt<'c> {
    pub group: &'c ModelGroup,
    /// The name the group was reached by when it is a fallback (a wildcard
    /// group's concrete model, say); `None` for the request's own.
    pub fallback_name: Option<String>,
    pub deployment: &'c ResolvedDeployment,
    pub timeout: Duration,
    /// 1 for the request's first attempt.
    pub number: u32,
}

/// An answer, and where it came from.
pub struct Served<'c, T> {
    pub value: T,
    pub group: &'c str,
    pub deployment: &'c str,
    pub attempts: u32,
    /// The fallback group that answered, when one did.
    pub fallback: Option<&'c str>,
    /// The attempt stays in flight on its deployment until this is dropped
    /// (with the answer's body).
    pub in_flight: InFlight,
}

/// What happened to one attempt or fallback, for the error's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// A deployment id, or a group name for a skipped fallback.
    pub target: String,
    pub what: String,
}

/// Nothing answered.
pub struct Exhausted<'c, E> {
    /// The last attempt's error, when any attempt was made.
    pub last: Option<E>,
    pub attempts: u32,
    pub records: Vec<Record>,
    /// With no attempt made: when the first resting deployment is back
    /// (unix ms).
    pub retry_at: Option<u64>,
    /// The group asked for.
    pub group: &'c str,
    /// The deployment of the last attempt.
    pub last_deployment: Option<&'c str>,
    /// Whether a group was left because every deployment's
    /// `max_input_tokens` is below the prompt.
    pub too_small: bool,
}

impl<E> Exhausted<'_, E> {
    /// The attempts, briefly: `"d1: 429 rate_limited; d2: timeout"`.
    pub fn summary(&self) -> String {
        self.records
            .iter()
            .map(|r| format!("{}: {}", r.target, r.what))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The attempt timeout of `deployment`: its own, else the router's.
fn attempt_timeout(deployment: &ResolvedDeployment, policy: &Policy) -> Duration {
    deployment
        .deployment()
        .timeout
        .as_ref()
        .and_then(duration)
        .or(policy.timeout)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs the loop for `req`, calling `attempt` for each attempt.
pub async fn run<'c, T, E, F, Fut>(
    table: &Table,
    clock: fn() -> u64,
    req: &Request<'_, 'c>,
    events: &(dyn Events + Sync),
    mut attempt: F,
) -> Result<Served<'c, T>, Exhausted<'c, E>>
where
    F: FnMut(Attempt<'c>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AttemptError,
{
    let policy = table.policy();
    let settings = req.config.router_settings();
    let deadline = Instant::now() + policy.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut records = Vec::new();
    let mut attempts = 0u32;
    let mut group = req.group;
    let mut fallback: Option<&'c str> = None;
    let mut fallback_name: Option<String> = None;
    let mut last_deployment: Option<&'c str> = None;
    let mut too_small = false;
    let mut plan: Option<std::vec::IntoIter<&str>> = None;
    let mut fallbacks_used = 0usize;
    let mut retry_at: Option<u64> = None;
    let mut last: Option<E> = None;
    let mut tried = Tried::default();

    'groups: loop {
        let states = table.group(group.name());
        let deployments = group.deployments();
        tried.clear();
        if let Some(eligible) = req.eligible {
            for (i, d) in deployments.iter().enumerate() {
                if !eligible(d) {
                    tried.exclude(i);
                }
            }
        }
        let mut retries = 0u32;
        let mut last_failure: Option<Failure> = None;
        let leave = loop {
            if Instant::now() >= deadline {
                break 'groups;
            }
            let now = clock();
            let ask = Ask {
                prompt_tokens: req.prompt_tokens,
                now,
            };
            let i = match pick(deployments, states, policy, ask, &tried, &mut rng) {
                Ok(i) => i,
                Err(Unavailable::AllTried) => {
                    // A retry is due and every usable deployment was tried:
                    // the same again, after the upstream's advice or a
                    // backoff.
                    let wait = last_failure
                        .and_then(|f| f.retry_after)
                        .unwrap_or_else(|| RETRY_BACKOFF.delay(retries.saturating_sub(1)));
                    if Instant::now() + wait >= deadline {
                        break kind_of(last_failure);
                    }
                    tokio::time::sleep(wait).await;
                    tried.allow_repeat();
                    continue;
                }
                Err(Unavailable::Resting { retry_at: at }) => {
                    retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                    break kind_of(last_failure);
                }
                Err(Unavailable::TooSmall) => {
                    too_small = true;
                    records.push(Record {
                        target: group.name().to_owned(),
                        what: "every deployment's max_input_tokens is below the prompt".into(),
                    });
                    break FallbackKind::ContextWindow;
                }
                Err(Unavailable::Empty) => break kind_of(last_failure),
            };
            let deployment = &deployments[i];
            let state = &states[i];
            let id = deployment.deployment().id.as_str();
            let timeout = attempt_timeout(deployment, policy)
                .min(deadline.saturating_duration_since(Instant::now()));
            attempts += 1;
            events.attempt(id);
            let in_flight = state.start(now, req.prompt_tokens);
            let started = Instant::now();
            last_deployment = Some(id);
            let result = attempt(Attempt {
                group,
                fallback_name: fallback_name.clone(),
                deployment,
                timeout,
                number: attempts,
            })
            .await;
            match result {
                Ok(value) => {
                    state.record_latency(started.elapsed());
                    return Ok(Served {
                        value,
                        group: group.name(),
                        deployment: id,
                        attempts,
                        fallback,
                        in_flight,
                    });
                }
                Err(e) => {
                    drop(in_flight);
                    let failure = e.failure();
                    if failure.class == ErrorClass::Timeout {
                        // A deployment that times out is slow, whatever its
                        // average said.
                        state.record_latency(started.elapsed());
                    }
                    events.failed(id, failure.class);
                    if let Some(cooled) = state.record_failure(&failure, policy, clock()) {
                        events.cooled(id, cooled);
                    }
                    records.push(Record {
                        target: id.to_owned(),
                        what: describe(&failure),
                    });
                    last = Some(e);
                    last_failure = Some(failure);
                    if retries < policy.retries(failure.class) {
                        retries += 1;
                        events.retry(id);
                        tried.insert(i);
                        continue;
                    }
                    match failure.class {
                        ErrorClass::BadRequest | ErrorClass::Misconfigured => break 'groups,
                        _ => break kind_of(Some(failure)),
                    }
                }
            }
        };
        let plan = plan.get_or_insert_with(|| {
            plan::fallbacks(
                settings,
                req.requested,
                req.group.name(),
                leave,
                req.fallbacks,
                usize::MAX,
            )
            .into_iter()
        });
        loop {
            if fallbacks_used >= policy.max_fallbacks {
                break 'groups;
            }
            let Some(next) = plan.next() else {
                break 'groups;
            };
            match (req.allowed)(next) {
                Some(g) => {
                    events.fallback(group.name(), next, leave);
                    fallbacks_used += 1;
                    fallback = Some(g.name());
                    fallback_name = Some(next.to_owned());
                    group = g;
                    continue 'groups;
                }
                None => {
                    events.fallback_denied(group.name(), next);
                    records.push(Record {
                        target: next.to_owned(),
                        what: "fallback skipped: not allowed for this key".into(),
                    });
                }
            }
        }
    }
    Err(Exhausted {
        last,
        attempts,
        records,
        retry_at: if attempts == 0 { retry_at } else { None },
        group: req.group.name(),
        last_deployment,
        too_small,
    })
}

/// Which fallbacks a group left after `failure` takes.
fn kind_of(failure: Option<Failure>) -> FallbackKind {
    match failure.map(|f| f.class) {
        Some(ErrorClass::ContextWindow) => FallbackKind::ContextWindow,
        Some(ErrorClass::ContentPolicy) => FallbackKind::ContentPolicy,
        _ => FallbackKind::Generic,
    }
}

/// A failure as an attempt list shows it: the status when there was one,
/// and the kind; never a URL or a credential.
fn describe(f: &Failure) -> String {
    match f.status {
        Some(status) => format!("{} {}", status.as_u16(), f.class.as_str()),
        None => f.class.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::classify::without_answer;
    use crate::router::table::Tables;
    use hyper::StatusCode;
    use sluice_proto::admin::v1::{Deployment, Fallback, RouterSettings};
    use sluice_proto::config::v1::Snapshot;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Debug)]
    struct Fail(Failure);

    impl AttemptError for Fail {
        fn failure(&self) -> Failure {
            self.0
        }
    }

    fn status(code: u16) -> Fail {
        let status = StatusCode::from_u16(code).unwrap();
        Fail(crate::router::classify::classify_status(
            status,
            b"",
            &hyper::HeaderMap::new(),
            std::time::SystemTime::now(),
        ))
    }

    fn dep(id: &str, group: &str) -> Deployment {
        Deployment {
            id: id.into(),
            model_name: group.into(),
            provider: "mock".into(),
            model: "m".into(),
            ..Default::default()
        }
    }

    fn config(deployments: Vec<Deployment>, settings: RouterSettings) -> Config {
        Config::from_snapshot(Snapshot {
            revision: 1,
            deployments,
            router_settings: Some(settings),
            ..Default::default()
        })
        .expect("valid")
    }

    /// Milliseconds on tokio's (paused) clock, from a fixed start.
    fn clock() -> u64 {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        1_700_000_000_000 + u64::try_from(Instant::now().duration_since(start).as_millis()).unwrap()
    }

    /// Scripted answers per deployment: each call takes the next one;
    /// `None` is success. Records the order of calls.
    struct Script {
        answers: RefCell<HashMap<String, Vec<Option<Fail>>>>,
        calls: RefCell<Vec<String>>,
    }

    impl Script {
        fn new(answers: Vec<(&str, Vec<Option<Fail>>)>) -> Script {
            Script {
                answers: RefCell::new(
                    answers
                        .into_iter()
                        .map(|(k, mut v)| {
                            v.reverse();
                            (k.to_owned(), v)
                        })
                        .collect(),
                ),
                calls: RefCell::new(Vec::new()),
            }
        }

        fn call(&self, id: &str) -> Result<&'static str, Fail> {
            self.calls.borrow_mut().push(id.to_owned());
            match self.answers.borrow_mut().get_mut(id).and_then(Vec::pop) {
                Some(Some(fail)) => Err(fail),
                _ => Ok("ok"),
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    async fn route<'c>(
        tables: &Tables,
        config: &'c Config,
        requested: &str,
        fallbacks: &RequestFallbacks,
        allowed: &(dyn Fn(&str) -> Option<&'c ModelGroup> + Sync),
        script: &Script,
    ) -> Result<Served<'c, &'static str>, Exhausted<'c, Fail>> {
        let table = tables.for_config(config);
        let req = Request {
            config,
            requested,
            group: config.model_group(requested).expect("group"),
            fallbacks,
            prompt_tokens: 10,
            allowed,
            eligible: None,
        };
        run(&table, clock, &req, &(), |a: Attempt<'c>| {
            let r = script.call(&a.deployment.deployment().id);
            async move { r }
        })
        .await
    }

    fn everything<'c>(config: &'c Config) -> impl Fn(&str) -> Option<&'c ModelGroup> {
        move |name| config.model_group(name)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_land_on_another_deployment() {
        for code in [500, 502, 503, 429] {
            let config = config(
                vec![dep("a", "g"), dep("b", "g")],
                RouterSettings::default(),
            );
            let allowed = everything(&config);
            let none = RequestFallbacks::default();
            // Each fails its first call.
            let script = Script::new(vec![
                ("a", vec![Some(status(code))]),
                ("b", vec![Some(status(code))]),
            ]);
            let r = route(&Tables::default(), &config, "g", &none, &allowed, &script).await;
            let calls = script.calls();
            assert_ne!(calls[0], calls[1], "{code}: the retry went elsewhere");
            if code == 429 {
                // Both cooled by their 429: nothing is left for a third.
                let e = r.err().expect("both cooling");
                assert_eq!((e.attempts, calls.len()), (2, 2));
            } else {
                // Both still usable: the third attempt repeats one.
                assert_eq!(r.ok().map(|s| s.attempts), Some(3), "{code}: {calls:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bound_is_one_plus_retries_per_group() {
        let settings = RouterSettings {
            num_retries: Some(3),
            fallbacks: vec![Fallback {
                model_group: "g".into(),
                fallbacks: vec!["h".into()],
            }],
            ..Default::default()
        };
        let config = config(vec![dep("a", "g"), dep("b", "g"), dep("c", "h")], settings);
        let fail = || (0..10).map(|_| Some(status(500))).collect::<Vec<_>>();
        let script = Script::new(vec![("a", fail()), ("b", fail()), ("c", fail())]);
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let r = route(&Tables::default(), &config, "g", &none, &allowed, &script).await;
        let e = r.err().expect("all failed");
        // 4 in g, 4 in h; allowed_fails (3) cools a deployment on its 4th
        // failure, so the 4th attempt of a group may find one cooling.
        let calls = script.calls();
        assert!(calls.len() <= 8, "{calls:?}");
        assert_eq!(e.attempts as usize, calls.len());
        assert!(calls.iter().filter(|c| *c == "c").count() <= 4);
        assert!(calls.contains(&"c".to_string()), "fell back: {calls:?}");
        assert!(e.last.is_some());
        assert!(e.summary().contains("500 server_error"), "{}", e.summary());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_request_is_not_retried_nor_falls_back() {
        let settings = RouterSettings {
            default_fallbacks: vec!["h".into()],
            ..Default::default()
        };
        let config = config(vec![dep("a", "g"), dep("b", "g"), dep("c", "h")], settings);
        let script = Script::new(vec![
            ("a", vec![Some(status(400))]),
            ("b", vec![Some(status(400))]),
        ]);
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let e = route(&Tables::default(), &config, "g", &none, &allowed, &script)
            .await
            .err()
            .expect("failed");
        assert_eq!(script.calls().len(), 1);
        assert_eq!(e.attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_policy_per_class() {
        let settings = RouterSettings {
            num_retries: Some(5),
            retry_policy: Some(sluice_proto::admin::v1::RetryPolicy {
                internal_server_error_retries: Some(1),
                bad_request_error_retries: Some(2),
                ..Default::default()
            }),
            allowed_fails: Some(100),
            ..Default::default()
        };
        let config = config(vec![dep("a", "g")], settings);
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let fail = |code| (0..10).map(|_| Some(status(code))).collect::<Vec<_>>();
        let script = Script::new(vec![("a", fail(500))]);
        let tables = Tables::default();
        let _ = route(&tables, &config, "g", &none, &allowed, &script).await;
        assert_eq!(script.calls().len(), 2, "1 + InternalServerErrorRetries");
        let script = Script::new(vec![("a", fail(400))]);
        let _ = route(&tables, &config, "g", &none, &allowed, &script).await;
        assert_eq!(script.calls().len(), 3, "1 + BadRequestErrorRetries");
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_deployment_again_after_a_backoff() {
        let config = config(vec![dep("a", "g")], RouterSettings::default());
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let script = Script::new(vec![("a", vec![Some(status(503)), Some(status(503))])]);
        let before = Instant::now();
        let served = route(&Tables::default(), &config, "g", &none, &allowed, &script)
            .await
            .ok()
            .expect("third time");
        assert_eq!(served.attempts, 3);
        assert!(Instant::now() - before <= FIRST_RETRY_DELAY * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn all_cooling_goes_to_fallbacks_and_nothing_left_says_when() {
        let settings = RouterSettings {
            fallbacks: vec![Fallback {
                model_group: "g".into(),
                fallbacks: vec!["h".into()],
            }],
            ..Default::default()
        };
        let config = config(vec![dep("a", "g"), dep("c", "h")], settings);
        let tables = Tables::default();
        let table = tables.for_config(&config);
        table
            .deployment("a")
            .unwrap()
            .fleet_cooldown(clock() + 7_000);
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let script = Script::new(vec![]);
        let served = route(&tables, &config, "g", &none, &allowed, &script)
            .await
            .ok()
            .expect("the fallback answers");
        assert_eq!((served.deployment, served.fallback), ("c", Some("h")));
        drop(served);
        table
            .deployment("c")
            .unwrap()
            .fleet_cooldown(clock() + 3_000);
        let e = route(&tables, &config, "g", &none, &allowed, &script)
            .await
            .err()
            .expect("nothing left");
        assert_eq!(e.attempts, 0);
        assert_eq!(e.retry_at, Some(clock() + 3_000), "the first one back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_the_key_may_not_use_is_never_called() {
        let settings = RouterSettings {
            fallbacks: vec![Fallback {
                model_group: "g".into(),
                fallbacks: vec!["secret".into(), "h".into()],
            }],
            num_retries: Some(0),
            ..Default::default()
        };
        let config = config(
            vec![dep("a", "g"), dep("s", "secret"), dep("c", "h")],
            settings,
        );
        let allowed = |name: &str| config.model_group(name).filter(|g| g.name() != "secret");
        let none = RequestFallbacks::default();
        let script = Script::new(vec![("a", vec![Some(status(500))])]);
        let served = route(&Tables::default(), &config, "g", &none, &allowed, &script)
            .await
            .ok()
            .expect("h answers");
        assert_eq!(script.calls(), ["a", "c"]);
        assert_eq!(served.fallback, Some("h"));
    }

    #[tokio::test(start_paused = true)]
    async fn context_window_and_content_policy_take_their_own_lists() {
        let settings = RouterSettings {
            fallbacks: vec![Fallback {
                model_group: "g".into(),
                fallbacks: vec!["generic".into()],
            }],
            context_window_fallbacks: vec![Fallback {
                model_group: "g".into(),
                fallbacks: vec!["big".into()],
            }],
            ..Default::default()
        };
        let config = config(
            vec![dep("a", "g"), dep("gen", "generic"), dep("big", "big")],
            settings,
        );
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let too_long = Fail(Failure {
            class: ErrorClass::ContextWindow,
            ..without_answer(ErrorClass::ContextWindow)
        });
        let script = Script::new(vec![("a", vec![Some(too_long)])]);
        let served = route(&Tables::default(), &config, "g", &none, &allowed, &script)
            .await
            .ok()
            .expect("big answers");
        assert_eq!(script.calls(), ["a", "big"]);
        assert_eq!(served.fallback, Some("big"));
        // A refusal with no content_policy_fallbacks goes nowhere.
        let refused = Fail(without_answer(ErrorClass::ContentPolicy));
        let script = Script::new(vec![("a", vec![Some(refused)])]);
        let e = route(&Tables::default(), &config, "g", &none, &allowed, &script)
            .await
            .err()
            .expect("refused");
        assert_eq!(script.calls(), ["a"]);
        assert_eq!(e.attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn request_fallbacks_and_disable() {
        let config = config(
            vec![dep("a", "g"), dep("c", "h")],
            RouterSettings {
                num_retries: Some(0),
                ..Default::default()
            },
        );
        let allowed = everything(&config);
        let asked = RequestFallbacks {
            fallbacks: Some(vec!["h".into()]),
            disabled: false,
        };
        let script = Script::new(vec![("a", vec![Some(status(503))])]);
        let served = route(&Tables::default(), &config, "g", &asked, &allowed, &script).await;
        assert_eq!(served.ok().map(|s| s.deployment), Some("c"));
        let off = RequestFallbacks {
            fallbacks: Some(vec!["h".into()]),
            disabled: true,
        };
        let script = Script::new(vec![("a", vec![Some(status(503))])]);
        let e = route(&Tables::default(), &config, "g", &off, &allowed, &script).await;
        assert!(e.is_err());
        assert_eq!(script.calls(), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_deadline_ends_the_retries() {
        let settings = RouterSettings {
            timeout: Some(prost_types::Duration {
                seconds: 2,
                nanos: 0,
            }),
            allowed_fails: Some(100),
            ..Default::default()
        };
        let config = config(vec![dep("a", "g")], settings);
        let allowed = everything(&config);
        let none = RequestFallbacks::default();
        let busy = Fail(Failure {
            retry_after: Some(Duration::from_secs(10)),
            ..without_answer(ErrorClass::InternalServer)
        });
        let script = Script::new(vec![("a", vec![Some(busy)])]);
        let before = Instant::now();
        let e = route(&Tables::default(), &config, "g", &none, &allowed, &script).await;
        assert!(e.is_err());
        assert_eq!(script.calls().len(), 1);
        assert!(
            Instant::now() - before < Duration::from_secs(1),
            "did not wait"
        );
    }
}
