//! The data plane's Prometheus metrics (DESIGN §4, `GET /metrics`), in one
//! registry. Names are part of the operator contract: dashboards and alerts
//! use them, so they are listed here and nowhere else.
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `sluice_config_revision` | gauge | etcd revision of the applied config (0: none) |
//! | `sluice_config_age_seconds` | gauge | seconds since the applied config was applied (for a config loaded from the cache: since the cache file was written); absent while none is |
//! | `sluice_config_apply_duration_seconds` | gauge | how long the last successful apply took |
//! | `sluice_config_stream_connected` | gauge | 1 while the stream to a control plane is up |
//! | `sluice_config_snapshots_received_total` | counter | snapshots received |
//! | `sluice_config_deltas_received_total` | counter | deltas received |
//! | `sluice_config_nacks_total` | counter | updates refused (NACKed) |
//! | `sluice_deployments_unusable` | gauge | deployments left out for a missing environment variable |
//! | `sluice_config_cache_load_errors_total` | counter | cache files refused at start |
//! | `sluice_config_cache_write_errors_total` | counter | failed cache writes |
//! | `sluice_config_cache_revision` | gauge | revision of the config last written to the cache |
//! | `sluice_requests_total{model_group, deployment, status, code}` | counter | OpenAI API requests answered; `code` is the error code (empty on success), `model_group`/`deployment` empty when the request never got that far |
//! | `sluice_request_duration_seconds{model_group}` | histogram | from the request's arrival to the end of its answer (the last streamed byte) |
//! | `sluice_upstream_duration_seconds{deployment}` | histogram | from sending upstream to the end of the upstream's body |
//! | `sluice_upstream_first_byte_seconds{deployment}` | histogram | from sending upstream to its response headers (for a stream: its first chunk) |
//! | `sluice_requests_in_flight` | gauge | OpenAI API requests being answered, streams included |
//! | `sluice_handler_panics_total` | counter | requests whose handler panicked (answered 500; the process keeps serving) |
//! | `sluice_credential_refresh_failures_total` | counter | background fetches of a provider's credentials (Vertex AI's token, Bedrock's temporary keys) that failed while the current ones were still usable |
//! | `sluice_router_attempts_total{deployment}` | counter | upstream attempts made by the router |
//! | `sluice_router_failures_total{deployment, kind}` | counter | failed attempts, by kind (`rate_limited`, `overloaded` (529), `timeout`, `server_error`, `connection`, `auth`, `not_found`, `context_window`, `content_policy`, `bad_request`, `misconfigured`) |
//! | `sluice_router_retries_total{deployment}` | counter | retries decided after a failure of that deployment |
//! | `sluice_router_cooldowns_total{deployment, source}` | counter | cooldowns entered: `own` (this data plane's) or `fleet` (heard from the control plane) |
//! | `sluice_router_fallbacks_total{model_group, fallback, kind}` | counter | fallbacks taken (`generic`, `context_window`, `content_policy`), or skipped because the key may not use them (`denied`) |
//! | `sluice_router_no_healthy_total{model_group}` | counter | requests answered 503 `no_healthy_deployment` |
//! | `sluice_router_cooldown_reports_total` | counter | own cooldowns queued to the control plane for the fleet |
//! | `sluice_router_cooldown_reports_dropped_total` | counter | own cooldowns not reported (the queue to the control plane was full) |
//! | `sluice_usage_requests_total{team, model_group}` | counter | answered requests metered (DESIGN §7) |
//! | `sluice_usage_prompt_tokens_total{team, model_group}` | counter | prompt tokens metered (the upstream's `usage`, or the estimate) |
//! | `sluice_usage_completion_tokens_total{team, model_group}` | counter | completion tokens metered |
//! | `sluice_usage_cache_read_tokens_total{team, model_group}` | counter | of the prompt tokens, those read from the upstream's prompt cache |
//! | `sluice_usage_cache_write_tokens_total{team, model_group}` | counter | of the prompt tokens, those written to it |
//! | `sluice_usage_spend_micro_usd_total{team, model_group}` | counter | spend metered, micro-USD |
//! | `sluice_usage_estimated_total` | counter | requests metered from an estimate (the upstream reported no usage, or the client left first) |
//! | `sluice_quota_refusals_total{kind}` | counter | requests refused 429 `insufficient_quota`: `key`, `team`, `organization` (budgets) or `credits` |
//! | `sluice_rate_limit_refusals_total{kind}` | counter | requests refused 429 `rate_limit_exceeded`: `rpm`, `tpm` or `parallel` (this data plane's share of the limit was used) |
//! | `sluice_fleet_data_planes` | gauge | the data planes the control plane counts in the fleet, which rate limits and budgets are shared among (0: never told) |
//! | `sluice_usage_journal_backlog` | gauge | usage records journaled and not yet counted by the control plane |
//! | `sluice_usage_reports_total` | counter | usage reports sent (resends included) |
//! | `sluice_usage_records_counted_total` | counter | usage records the control plane confirmed counted |
//! | `sluice_usage_report_latency_seconds` | histogram | from a report's sending to the control plane's answer |
//!
//! Labels come from the config (model group names, deployment ids), the
//! status code and the fixed error-code list, so their cardinality is bounded;
//! the requested model name is never a label (clients choose it freely).
//! Usage is labelled by team and model group, never by key: a fleet has a
//! few hundred teams and millions of keys, so the series are at most teams ×
//! model groups; per-key figures are `UsageService/GetUsage`'s.

mod histogram;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

use histogram::Histogram;

/// One answered request's usage, for [`Metrics::metered`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Metered {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// micro-USD.
    pub spend: i64,
    /// From an estimate rather than the upstream's `usage`.
    pub estimated: bool,
}

/// The `content-type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the data plane exports. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    revision: Gauge,
    applied_at: Arc<AppliedAt>,
    apply_duration: Gauge<f64, AtomicU64>,
    stream_connected: Gauge,
    snapshots_received: Counter,
    deltas_received: Counter,
    nacks: Counter,
    deployments_unusable: Gauge,
    cache_load_errors: Counter,
    cache_write_errors: Counter,
    cache_revision: Gauge,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<GroupLabel, Histogram, fn() -> Histogram>,
    upstream_duration: Family<DeploymentLabel, Histogram, fn() -> Histogram>,
    upstream_first_byte: Family<DeploymentLabel, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    handler_panics: Counter,
    credential_refresh_failures: Counter,
    router: RouterMetrics,
    usage: UsageMetrics,
    /// Usage records journaled and not yet counted.
    pub usage_backlog: Gauge,
    /// The fleet's data planes, as the control plane counts them.
    pub fleet_data_planes: Gauge,
}

/// Metering's metrics (DESIGN §7).
#[derive(Debug)]
struct UsageMetrics {
    requests: Family<UsageLabels, Counter>,
    prompt_tokens: Family<UsageLabels, Counter>,
    completion_tokens: Family<UsageLabels, Counter>,
    cache_read_tokens: Family<UsageLabels, Counter>,
    cache_write_tokens: Family<UsageLabels, Counter>,
    spend: Family<UsageLabels, Counter>,
    estimated: Counter,
    refusals: Family<RefusalLabel, Counter>,
    limit_refusals: Family<RefusalLabel, Counter>,
    reports: Counter,
    counted: Counter,
    report_latency: Histogram,
    /// Each (team, model group)'s counters, looked up once: a request
    /// meters with one atomic load and two map lookups, no allocation and
    /// none of the families' locks. Copied on write (a pair's first
    /// request); as many entries as the families have series.
    by_team: ArcSwap<ByTeam>,
    adding: Mutex<()>,
}

/// The counters by team, then model group.
type ByTeam = HashMap<String, HashMap<String, Arc<UsageCounters>>>;

/// One (team, model group)'s usage counters: the families' own, shared.
#[derive(Debug)]
struct UsageCounters {
    labels: UsageLabels,
    requests: Counter,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    /// Made on first use: most answers say nothing of a cache, and a
    /// series appears only once it counts something.
    cache_read_tokens: OnceLock<Counter>,
    cache_write_tokens: OnceLock<Counter>,
    spend: Counter,
}

impl UsageMetrics {
    /// The counters of (`team`, `model_group`).
    fn counters(&self, team: &str, model_group: &str) -> Arc<UsageCounters> {
        let kept = |map: &ByTeam| map.get(team).and_then(|g| g.get(model_group)).cloned();
        if let Some(counters) = kept(&self.by_team.load()) {
            return counters;
        }
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.by_team.load_full();
        if let Some(counters) = kept(&current) {
            return counters;
        }
        let labels = UsageLabels {
            team: team.to_owned(),
            model_group: model_group.to_owned(),
        };
        let made = Arc::new(UsageCounters {
            requests: self.requests.get_or_create(&labels).clone(),
            prompt_tokens: self.prompt_tokens.get_or_create(&labels).clone(),
            completion_tokens: self.completion_tokens.get_or_create(&labels).clone(),
            cache_read_tokens: OnceLock::new(),
            cache_write_tokens: OnceLock::new(),
            spend: self.spend.get_or_create(&labels).clone(),
            labels,
        });
        let mut next = (*current).clone();
        next.entry(team.to_owned())
            .or_default()
            .insert(model_group.to_owned(), Arc::clone(&made));
        self.by_team.store(Arc::new(next));
        made
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UsageLabels {
    team: String,
    model_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabel {
    kind: &'static str,
}

/// The router's metrics (DESIGN §5).
#[derive(Debug, Default)]
struct RouterMetrics {
    attempts: Family<DeploymentLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    retries: Family<DeploymentLabel, Counter>,
    cooldowns: Family<CooldownLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    no_healthy: Family<GroupLabel, Counter>,
    reports: Counter,
    reports_dropped: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    deployment: String,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CooldownLabels {
    deployment: String,
    source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FallbackLabels {
    model_group: String,
    fallback: String,
    kind: &'static str,
}

/// Labels of `sluice_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub model_group: String,
    pub deployment: String,
    pub status: u16,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabel {
    model_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeploymentLabel {
    deployment: String,
}

/// One deployment's `sluice_upstream_first_byte_seconds` and
/// `sluice_upstream_duration_seconds` ([`Metrics::upstream`]); clones
/// share the counts.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    first_byte: Histogram,
    duration: Histogram,
}

impl UpstreamMetrics {
    /// From sending upstream to its response headers (a stream's first
    /// chunk).
    pub fn first_byte(&self, took: Duration) {
        self.first_byte.observe(took);
    }

    /// From sending upstream to the end of its body.
    pub fn done(&self, took: Duration) {
        self.duration.observe(took);
    }
}

impl DeploymentLabel {
    fn new(deployment: &str) -> Self {
        DeploymentLabel {
            deployment: deployment.to_owned(),
        }
    }
}

/// 5 ms to about 160 s, doubling: LLM calls span that range.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let revision = Gauge::default();
        registry.register(
            "sluice_config_revision",
            "etcd revision of the applied configuration (0: none)",
            revision.clone(),
        );
        let applied_at = Arc::new(AppliedAt::default());
        registry.register_collector(Box::new(Arc::clone(&applied_at)));
        let apply_duration = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "sluice_config_apply_duration",
            "How long the last successful configuration apply took",
            Unit::Seconds,
            apply_duration.clone(),
        );
        let stream_connected = Gauge::default();
        registry.register(
            "sluice_config_stream_connected",
            "1 while the configuration stream to a control plane is up",
            stream_connected.clone(),
        );
        let snapshots_received = Counter::default();
        registry.register(
            "sluice_config_snapshots_received",
            "Configuration snapshots received",
            snapshots_received.clone(),
        );
        let deltas_received = Counter::default();
        registry.register(
            "sluice_config_deltas_received",
            "Configuration deltas received",
            deltas_received.clone(),
        );
        let nacks = Counter::default();
        registry.register(
            "sluice_config_nacks",
            "Configuration updates refused (NACKed); the last good configuration stays",
            nacks.clone(),
        );
        let deployments_unusable = Gauge::default();
        registry.register(
            "sluice_deployments_unusable",
            "Deployments left out because an os.environ/ variable they refer to is not set",
            deployments_unusable.clone(),
        );
        let cache_load_errors = Counter::default();
        registry.register(
            "sluice_config_cache_load_errors",
            "Snapshot cache files refused at start (corrupt, truncated, wrong version, invalid)",
            cache_load_errors.clone(),
        );
        let cache_revision = Gauge::default();
        registry.register(
            "sluice_config_cache_revision",
            "revision of the configuration last written to the snapshot cache (0: none)",
            cache_revision.clone(),
        );
        let cache_write_errors = Counter::default();
        registry.register(
            "sluice_config_cache_write_errors",
            "Failed writes of the snapshot cache file",
            cache_write_errors.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sluice_requests",
            "OpenAI API requests answered, by model group, deployment, status and error code",
            requests.clone(),
        );
        let request_duration =
            Family::<GroupLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "sluice_request_duration",
            "Time from a request's arrival to the end of its answer",
            Unit::Seconds,
            request_duration.clone(),
        );
        let upstream_duration =
            Family::<DeploymentLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "sluice_upstream_duration",
            "Time from sending a request upstream to the end of the upstream's body",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let upstream_first_byte =
            Family::<DeploymentLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "sluice_upstream_first_byte",
            "Time from sending a request upstream to its response headers",
            Unit::Seconds,
            upstream_first_byte.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "sluice_requests_in_flight",
            "OpenAI API requests being answered, streams included",
            in_flight.clone(),
        );
        let handler_panics = Counter::default();
        registry.register(
            "sluice_handler_panics",
            "Requests whose handler panicked; each was answered 500 and serving went on",
            handler_panics.clone(),
        );
        let credential_refresh_failures = Counter::default();
        registry.register(
            "sluice_credential_refresh_failures",
            "Background fetches of a provider's credentials that failed while the current ones were still usable",
            credential_refresh_failures.clone(),
        );
        let router = RouterMetrics::default();
        registry.register(
            "sluice_router_attempts",
            "Upstream attempts made by the router, by deployment",
            router.attempts.clone(),
        );
        registry.register(
            "sluice_router_failures",
            "Failed upstream attempts, by deployment and kind",
            router.failures.clone(),
        );
        registry.register(
            "sluice_router_retries",
            "Retries decided after a failed attempt, by the deployment that failed",
            router.retries.clone(),
        );
        registry.register(
            "sluice_router_cooldowns",
            "Cooldowns entered, by deployment and source (own, fleet)",
            router.cooldowns.clone(),
        );
        registry.register(
            "sluice_router_fallbacks",
            "Fallbacks taken (generic, context_window, content_policy) or skipped (denied)",
            router.fallbacks.clone(),
        );
        registry.register(
            "sluice_router_no_healthy",
            "Requests answered 503 no_healthy_deployment, by model group",
            router.no_healthy.clone(),
        );
        registry.register(
            "sluice_router_cooldown_reports",
            "Own cooldowns queued to the control plane for the fleet",
            router.reports.clone(),
        );
        registry.register(
            "sluice_router_cooldown_reports_dropped",
            "Own cooldowns not reported because the queue to the control plane was full",
            router.reports_dropped.clone(),
        );
        let usage = UsageMetrics {
            requests: Family::default(),
            prompt_tokens: Family::default(),
            completion_tokens: Family::default(),
            cache_read_tokens: Family::default(),
            cache_write_tokens: Family::default(),
            spend: Family::default(),
            estimated: Counter::default(),
            refusals: Family::default(),
            limit_refusals: Family::default(),
            reports: Counter::default(),
            counted: Counter::default(),
            // 1 ms to about 16 s.
            report_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            by_team: ArcSwap::default(),
            adding: Mutex::new(()),
        };
        registry.register(
            "sluice_usage_requests",
            "Answered requests metered, by team and model group",
            usage.requests.clone(),
        );
        registry.register(
            "sluice_usage_prompt_tokens",
            "Prompt tokens metered, by team and model group",
            usage.prompt_tokens.clone(),
        );
        registry.register(
            "sluice_usage_completion_tokens",
            "Completion tokens metered, by team and model group",
            usage.completion_tokens.clone(),
        );
        registry.register(
            "sluice_usage_cache_read_tokens",
            "Of the prompt tokens metered, those read from the upstream's prompt cache, by team and model group",
            usage.cache_read_tokens.clone(),
        );
        registry.register(
            "sluice_usage_cache_write_tokens",
            "Of the prompt tokens metered, those written to the upstream's prompt cache, by team and model group",
            usage.cache_write_tokens.clone(),
        );
        registry.register(
            "sluice_usage_spend_micro_usd",
            "Spend metered in micro-USD, by team and model group",
            usage.spend.clone(),
        );
        registry.register(
            "sluice_usage_estimated",
            "Requests metered from an estimate: no usage from the upstream, or the client left first",
            usage.estimated.clone(),
        );
        registry.register(
            "sluice_quota_refusals",
            "Requests refused 429 insufficient_quota, by kind (key, team, organization, credits)",
            usage.refusals.clone(),
        );
        registry.register(
            "sluice_rate_limit_refusals",
            "Requests refused 429 rate_limit_exceeded, by kind (rpm, tpm, parallel)",
            usage.limit_refusals.clone(),
        );
        let fleet_data_planes = Gauge::default();
        registry.register(
            "sluice_fleet_data_planes",
            "The data planes the control plane counts in the fleet (rate limits and budgets are shared among them; 0: never told)",
            fleet_data_planes.clone(),
        );
        let usage_backlog = Gauge::default();
        registry.register(
            "sluice_usage_journal_backlog",
            "Usage records journaled and not yet counted by the control plane",
            usage_backlog.clone(),
        );
        registry.register(
            "sluice_usage_reports",
            "Usage reports sent to the control plane, resends included",
            usage.reports.clone(),
        );
        registry.register(
            "sluice_usage_records_counted",
            "Usage records the control plane confirmed counted",
            usage.counted.clone(),
        );
        registry.register_with_unit(
            "sluice_usage_report_latency",
            "From sending a usage report to the control plane's answer",
            Unit::Seconds,
            usage.report_latency.clone(),
        );
        Metrics {
            usage,
            usage_backlog,
            fleet_data_planes,
            router,
            requests,
            request_duration,
            upstream_duration,
            upstream_first_byte,
            in_flight,
            handler_panics,
            credential_refresh_failures,
            registry,
            revision,
            applied_at,
            apply_duration,
            stream_connected,
            snapshots_received,
            deltas_received,
            nacks,
            deployments_unusable,
            cache_load_errors,
            cache_write_errors,
            cache_revision,
        }
    }

    /// One answered request's usage.
    pub fn metered(&self, team: &str, model_group: &str, m: Metered) {
        let Metered {
            prompt_tokens,
            completion_tokens,
            cache_read_tokens,
            cache_write_tokens,
            spend,
            estimated,
        } = m;
        let c = self.usage.counters(team, model_group);
        c.requests.inc();
        c.prompt_tokens.inc_by(prompt_tokens);
        c.completion_tokens.inc_by(completion_tokens);
        for (family, cell, n) in [
            (
                &self.usage.cache_read_tokens,
                &c.cache_read_tokens,
                cache_read_tokens,
            ),
            (
                &self.usage.cache_write_tokens,
                &c.cache_write_tokens,
                cache_write_tokens,
            ),
        ] {
            if n > 0 {
                cell.get_or_init(|| family.get_or_create(&c.labels).clone())
                    .inc_by(n);
            }
        }
        c.spend.inc_by(u64::try_from(spend).unwrap_or(0));
        if estimated {
            self.usage.estimated.inc();
        }
    }

    /// A request refused for a budget (`key`, `team`, `organization`) or
    /// for credits.
    pub fn quota_refused(&self, kind: &'static str) {
        self.usage
            .refusals
            .get_or_create(&RefusalLabel { kind })
            .inc();
    }

    /// A request refused for a rate limit (`rpm`, `tpm`, `parallel`).
    pub fn limit_refused(&self, kind: &'static str) {
        self.usage
            .limit_refusals
            .get_or_create(&RefusalLabel { kind })
            .inc();
    }

    pub fn usage_report_sent(&self) {
        self.usage.reports.inc();
    }

    /// The control plane answered a report after `took`, confirming
    /// `records`.
    pub fn usage_counted(&self, records: u64, took: Option<Duration>) {
        self.usage.counted.inc_by(records);
        if let Some(took) = took {
            self.usage.report_latency.observe(took);
        }
    }

    /// A config was applied: `applied_at` is when it was (or, from the cache,
    /// when the cache was written), `took` how long building it took.
    pub fn applied(&self, revision: i64, applied_at: SystemTime, took: Duration, unusable: usize) {
        self.revision.set(revision);
        self.applied_at.set(applied_at);
        self.apply_duration.set(took.as_secs_f64());
        self.deployments_unusable
            .set(i64::try_from(unusable).unwrap_or(i64::MAX));
    }

    pub fn snapshot_received(&self) {
        self.snapshots_received.inc();
    }

    pub fn delta_received(&self) {
        self.deltas_received.inc();
    }

    pub fn nacked(&self) {
        self.nacks.inc();
    }

    pub fn set_stream_connected(&self, connected: bool) {
        self.stream_connected.set(i64::from(connected));
    }

    pub fn cache_load_failed(&self) {
        self.cache_load_errors.inc();
    }

    pub fn cache_written(&self, revision: i64) {
        self.cache_revision.set(revision);
    }

    pub fn cache_write_failed(&self) {
        self.cache_write_errors.inc();
    }

    /// One OpenAI API request was answered.
    pub fn request_done(&self, labels: &RequestLabels, took: Duration) {
        self.requests.get_or_create(labels).inc();
        self.request_duration
            .get_or_create(&GroupLabel {
                model_group: labels.model_group.clone(),
            })
            .observe(took);
    }

    /// `deployment`'s upstream histograms, for the deployment to keep
    /// (the config does) so that a request records its upstream leg
    /// without looking them up.
    pub fn upstream(&self, deployment: &str) -> UpstreamMetrics {
        let label = DeploymentLabel::new(deployment);
        UpstreamMetrics {
            first_byte: self.upstream_first_byte.get_or_create(&label).clone(),
            duration: self.upstream_duration.get_or_create(&label).clone(),
        }
    }

    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    pub fn request_ended(&self) {
        self.in_flight.dec();
    }

    pub fn handler_panicked(&self) {
        self.handler_panics.inc();
    }

    /// A background fetch of a provider's credentials failed.
    pub fn credential_refresh_failed(&self) {
        self.credential_refresh_failures.inc();
    }

    pub fn router_attempt(&self, deployment: &str) {
        self.router
            .attempts
            .get_or_create(&DeploymentLabel::new(deployment))
            .inc();
    }

    pub fn router_failure(&self, deployment: &str, kind: &'static str) {
        self.router
            .failures
            .get_or_create(&FailureLabels {
                deployment: deployment.to_owned(),
                kind,
            })
            .inc();
    }

    pub fn router_retry(&self, deployment: &str) {
        self.router
            .retries
            .get_or_create(&DeploymentLabel::new(deployment))
            .inc();
    }

    /// `source`: `own` or `fleet`.
    pub fn router_cooldown(&self, deployment: &str, source: &'static str) {
        self.router
            .cooldowns
            .get_or_create(&CooldownLabels {
                deployment: deployment.to_owned(),
                source,
            })
            .inc();
    }

    /// `kind`: the fallback kind, or `denied`.
    pub fn router_fallback(&self, model_group: &str, fallback: &str, kind: &'static str) {
        self.router
            .fallbacks
            .get_or_create(&FallbackLabels {
                model_group: model_group.to_owned(),
                fallback: fallback.to_owned(),
                kind,
            })
            .inc();
    }

    pub fn router_no_healthy(&self, model_group: &str) {
        self.router
            .no_healthy
            .get_or_create(&GroupLabel {
                model_group: model_group.to_owned(),
            })
            .inc();
    }

    /// An own cooldown was queued for the control plane (`sent`), or not.
    pub fn router_cooldown_report(&self, sent: bool) {
        if sent {
            self.router.reports.inc();
        } else {
            self.router.reports_dropped.inc();
        }
    }

    /// The exposition, OpenMetrics text (which Prometheus reads), with the
    /// config age computed now.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the encoder's Result is for other
        // writers.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// When the applied config was applied, as milliseconds since the Unix epoch
/// (0: never). The age is computed at scrape time, so it grows while the
/// stream is down: what an alert on a stale data plane needs.
#[derive(Debug, Default)]
struct AppliedAt(AtomicU64);

impl AppliedAt {
    fn set(&self, at: SystemTime) {
        let millis = at.duration_since(UNIX_EPOCH).map_or(1, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.0.store(millis, Ordering::Relaxed);
    }
}

impl Collector for AppliedAt {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let millis = self.0.load(Ordering::Relaxed);
        if millis == 0 {
            return Ok(());
        }
        let applied = UNIX_EPOCH + Duration::from_millis(millis);
        // A clock stepped backwards reads as age 0 rather than negative.
        let age = SystemTime::now()
            .duration_since(applied)
            .unwrap_or_default()
            .as_secs_f64();
        let gauge = ConstGauge::new(age);
        let metric = encoder.encode_descriptor(
            "sluice_config_age",
            "Seconds since the applied configuration was applied (from the cache: since it was written)",
            Some(&Unit::Seconds),
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(!text.contains("sluice_config_age_seconds"), "{text}");
        metrics.applied(
            7,
            SystemTime::now() - Duration::from_secs(30),
            Duration::from_millis(3),
            2,
        );
        metrics.nacked();
        let text = metrics.encode();
        for name in [
            "sluice_config_revision 7",
            "sluice_config_age_seconds ",
            "sluice_config_apply_duration_seconds 0.003",
            "sluice_config_stream_connected 0",
            "sluice_config_snapshots_received_total 0",
            "sluice_config_deltas_received_total 0",
            "sluice_config_nacks_total 1",
            "sluice_deployments_unusable 2",
            "sluice_config_cache_load_errors_total 0",
            "sluice_config_cache_write_errors_total 0",
            "sluice_credential_refresh_failures_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_config_age_seconds "))
            .and_then(|v| v.parse().ok())
            .expect("age sample");
        assert!((30.0..60.0).contains(&age), "{age}");
    }

    #[test]
    fn usage_is_counted_per_team_and_group_through_the_kept_counters() {
        let metrics = Metrics::new();
        let m = |prompt, cache_read| Metered {
            prompt_tokens: prompt,
            completion_tokens: 2,
            cache_read_tokens: cache_read,
            cache_write_tokens: 0,
            spend: 30,
            estimated: false,
        };
        metrics.metered("t1", "g", m(10, 0));
        metrics.metered("t1", "g", m(5, 4));
        metrics.metered("t2", "g", m(1, 0));
        metrics.metered("", "other", m(1, 0));
        let text = metrics.encode();
        for line in [
            r#"sluice_usage_requests_total{team="t1",model_group="g"} 2"#,
            r#"sluice_usage_prompt_tokens_total{team="t1",model_group="g"} 15"#,
            r#"sluice_usage_completion_tokens_total{team="t1",model_group="g"} 4"#,
            r#"sluice_usage_cache_read_tokens_total{team="t1",model_group="g"} 4"#,
            r#"sluice_usage_spend_micro_usd_total{team="t1",model_group="g"} 60"#,
            r#"sluice_usage_requests_total{team="t2",model_group="g"} 1"#,
            r#"sluice_usage_requests_total{team="",model_group="other"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A series appears only once it counts something.
        assert!(
            !text.contains(r#"cache_read_tokens_total{team="t2""#),
            "{text}"
        );
        assert!(
            !text.contains("sluice_usage_cache_write_tokens_total{"),
            "{text}"
        );
        assert_eq!(metrics.usage.by_team.load().len(), 3);
    }
}
