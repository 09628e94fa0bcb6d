//! Stage 4 of the request path: which deployment serves a request, and
//! what happens when it fails (DESIGN §5): the strategies, retries,
//! cooldowns (this data plane's and the fleet's) and fallbacks.
//!
//! Decisions are pure functions over (config, routing state, error, time),
//! each in its module and unit-tested without sockets:
//!
//! - [`classify`]: a failed attempt's kind, from the upstream's status, the
//!   start of its error body and its `Retry-After`.
//! - [`policy`]: the router settings read once per config, defaults filled
//!   in (LiteLLM's).
//! - [`state`]: each deployment's in-flight count, latency, minute usage,
//!   failures and cooldowns, on atomics; [`table`]: those states by group
//!   for one config, carried over across config changes.
//! - [`pick`]: the deployment for the next attempt (availability inside the
//!   pick, then `order`, then the strategy).
//! - [`plan`]: the fallback groups, by why the group failed.
//! - [`attempts`]: the loop that drives them, generic over the attempt.
//! - [`affinity`]: which upstream account stored a Responses API response,
//!   so a request continuing it reaches that account.
//!
//! [`Router`] holds this data plane's state and the queue of its own
//! cooldowns to the control plane, which spreads them to the fleet
//! ([`crate::config::discovery`] carries both ways); nothing here is on the
//! network.

pub mod affinity;
pub mod attempts;
pub mod classify;
pub mod pick;
pub mod plan;
pub mod policy;
pub mod state;
pub mod table;

use std::sync::Arc;
use std::time::SystemTime;

use sluice_proto::config::v1::Cooldown;
use tokio::sync::mpsc;

use crate::config::discovery::{Fleet, OwnCooldown};
use crate::metrics::Metrics;
use crate::upstream::UpstreamError;
use attempts::{AttemptError, Events};
use classify::{ErrorClass, Failure};
use plan::FallbackKind;
use state::{Cooled, now_ms};
use table::Tables;

/// How many own cooldowns may wait for the config stream: beyond that (the
/// stream down for long, a storm of failures) the newest are dropped and
/// counted; this data plane still honours them itself.
pub const REPORT_QUEUE: usize = 1024;

/// This data plane's routing: the state of every deployment, and the own
/// cooldowns waiting to be reported.
#[derive(Debug)]
pub struct Router {
    tables: Tables,
    reports: mpsc::Sender<OwnCooldown>,
    affinity: affinity::Affinity,
}

/// The receiving end of a [`Router`]'s own cooldowns, for the config stream.
pub type Reports = mpsc::Receiver<OwnCooldown>;

impl Router {
    pub fn new() -> (Arc<Router>, Reports) {
        let (reports, rx) = mpsc::channel(REPORT_QUEUE);
        (
            Arc::new(Router {
                tables: Tables::default(),
                reports,
                affinity: affinity::Affinity::default(),
            }),
            rx,
        )
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn affinity(&self) -> &affinity::Affinity {
        &self.affinity
    }

    /// The clock routing state is kept in (unix milliseconds).
    pub fn clock() -> u64 {
        now_ms()
    }

    /// Cooldowns the control plane relayed: each deployment is skipped until
    /// `remaining_ms` from now. Returns how many were news here.
    pub fn fleet_cooldowns(&self, cooldowns: &[Cooldown], metrics: &Metrics) -> usize {
        let now = now_ms();
        let mut news = 0;
        for c in cooldowns {
            let until = now.saturating_add(c.remaining_ms);
            if self.tables.fleet_cooldown(&c.deployment_id, until, now) {
                metrics.router_cooldown(&c.deployment_id, "fleet");
                news += 1;
            }
        }
        news
    }

    /// Events of one request's attempt loop, recorded in `metrics`; own
    /// cooldowns are queued for the fleet.
    pub fn events<'a>(&'a self, metrics: &'a Metrics) -> RouterEvents<'a> {
        RouterEvents {
            router: self,
            metrics,
        }
    }

    fn report(&self, deployment: &str, cooled: Cooled, metrics: &Metrics) {
        let sent = self
            .reports
            .try_send(OwnCooldown {
                deployment_id: deployment.to_owned(),
                until_ms: cooled.until_ms,
                reason: cooled.class.as_str(),
            })
            .is_ok();
        metrics.router_cooldown_report(sent);
    }

    /// The config stream's end of this router: its own cooldowns out, the
    /// fleet's in.
    pub fn fleet(self: &Arc<Self>, reports: Reports, metrics: Arc<Metrics>) -> Fleet {
        let router = Arc::clone(self);
        Fleet {
            reports,
            heard: Box::new(move |cooldowns| {
                router.fleet_cooldowns(cooldowns, &metrics);
            }),
        }
    }
}

/// [`Events`] into metrics, the log and the fleet.
pub struct RouterEvents<'a> {
    router: &'a Router,
    metrics: &'a Metrics,
}

impl Events for RouterEvents<'_> {
    fn attempt(&self, deployment: &str) {
        self.metrics.router_attempt(deployment);
    }

    fn failed(&self, deployment: &str, class: ErrorClass) {
        self.metrics.router_failure(deployment, class.as_str());
    }

    fn retry(&self, deployment: &str) {
        self.metrics.router_retry(deployment);
    }

    fn cooled(&self, deployment: &str, cooled: Cooled) {
        tracing::warn!(
            deployment,
            reason = cooled.class.as_str(),
            for_ms = cooled.until_ms.saturating_sub(now_ms()),
            "deployment cooling down"
        );
        self.metrics.router_cooldown(deployment, "own");
        self.router.report(deployment, cooled, self.metrics);
    }

    fn fallback(&self, from: &str, to: &str, kind: FallbackKind) {
        tracing::info!(
            model_group = from,
            fallback = to,
            kind = kind.as_str(),
            "falling back"
        );
        self.metrics.router_fallback(from, to, kind.as_str());
    }

    fn fallback_denied(&self, from: &str, to: &str) {
        self.metrics.router_fallback(from, to, "denied");
    }
}

impl AttemptError for UpstreamError {
    fn failure(&self) -> Failure {
        match self {
            UpstreamError::Status {
                status,
                body,
                relayed,
                ..
            } => classify::classify_status(*status, body, relayed, SystemTime::now()),
            UpstreamError::Timeout(_) => classify::without_answer(ErrorClass::Timeout),
            UpstreamError::Connection(_) => classify::without_answer(ErrorClass::Connection),
            UpstreamError::Misconfigured(_) => classify::without_answer(ErrorClass::Misconfigured),
            UpstreamError::Untranslatable { .. } => {
                classify::without_answer(ErrorClass::BadRequest)
            }
            UpstreamError::UnreadableAnswer(_) => {
                classify::without_answer(ErrorClass::InternalServer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;
    use hyper::body::Bytes;
    use hyper::header::{HeaderMap, HeaderValue};

    #[test]
    fn upstream_errors_by_kind() {
        let mut relayed = HeaderMap::new();
        relayed.insert("retry-after", HeaderValue::from_static("7"));
        let e = UpstreamError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: Bytes::new(),
            shape: crate::formats::ErrorShape::OpenAi,
            relayed: Box::new(relayed),
        };
        let f = e.failure();
        assert_eq!(f.class, ErrorClass::RateLimit);
        assert_eq!(f.retry_after, Some(std::time::Duration::from_secs(7)));
        assert_eq!(
            UpstreamError::Timeout(std::time::Duration::from_secs(1))
                .failure()
                .class,
            ErrorClass::Timeout
        );
        assert_eq!(
            UpstreamError::Connection("refused".into()).failure().class,
            ErrorClass::Connection
        );
    }

    #[test]
    fn own_cooldowns_are_queued_for_the_fleet_and_fleet_ones_apply() {
        let (router, mut reports) = Router::new();
        let metrics = Metrics::new();
        let events = router.events(&metrics);
        events.cooled(
            "d",
            Cooled {
                until_ms: now_ms() + 5_000,
                class: ErrorClass::RateLimit,
            },
        );
        let c = reports.try_recv().expect("queued");
        assert_eq!(c.deployment_id, "d");
        assert_eq!(c.reason, "rate_limited");
        let news = router.fleet_cooldowns(
            &[Cooldown {
                deployment_id: "unknown-yet".into(),
                remaining_ms: 1_000,
                ..Default::default()
            }],
            &metrics,
        );
        assert_eq!(news, 0, "no state yet: remembered for when it arrives");
    }
}
