//! The control plane's Prometheus metrics, served on `--metrics-listen`
//! (`GET /metrics`), separate from the gRPC port.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `sluice_config_revision` | gauge | revision of the configuration this replica distributes |
//! | `sluice_invalid_objects` | gauge | stored values refused for distribution (see `ListDataPlanes`) |
//! | `sluice_invalid_objects_seen_total` | counter | refusals since start (each time a bad value was read) |
//! | `sluice_hub_lists_total` | counter | full lists of the store (start, and after compaction) |
//! | `sluice_data_plane_streams` | gauge | data-plane streams connected to this replica |
//! | `sluice_cooldown_reports_total` | counter | cooldowns reported by this replica's data planes |
//! | `sluice_cooldown_reports_refused_total` | counter | reports naming no valid deployment id |
//! | `sluice_cooldown_reports_shed_total` | counter | reports shed because the writer was that far behind |
//! | `sluice_cooldown_reports_coalesced_total` | counter | reports dropped: they did not extend what the fleet knows |
//! | `sluice_cooldown_reports_deferred_total` | counter | reports held for the deployment's next write slot or a write token, merged |
//! | `sluice_cooldown_writes_total` | counter | cooldown records written to the store |
//! | `sluice_cooldown_write_failures_total` | counter | cooldown writes the store refused or did not answer |
//! | `sluice_fleet_cooldowns` | gauge | cooldowns in force fleet-wide, as this replica last counted |
//! | `sluice_usage_batches_applied_total` | counter | usage reports counted (each in one transaction) |
//! | `sluice_usage_batch_repeats_total` | counter | usage reports already counted, answered without counting |
//! | `sluice_usage_batch_overlaps_total` | counter | usage reports partly counted, refused with the mark to resend from |
//! | `sluice_usage_batch_gaps_total` | counter | usage reports counted although records before them never arrived |
//! | `sluice_usage_batches_failed_total` | counter | usage reports not counted: malformed, too large, store errors |
//! | `sluice_usage_entries_total` | counter | usage entries counted |
//! | `sluice_usage_apply_conflicts_total` | counter | usage transactions retried because another writer got there first |
//! | `sluice_usage_apply_seconds` | histogram | time to answer a usage report, retries included |
//! | `sluice_usage_totals` | gauge | scopes whose totals this replica holds for its data planes |
//! | `sluice_limits_managed` | gauge | rate limits this replica leases shares of (demanded in the last 2 min) |
//! | `sluice_limit_leases_sent_total` | counter | leases (one share of one limit) sent to this replica's data planes |
//! | `sluice_limit_data_planes` | gauge | data planes counted for the fleet when sharing limits (`LimitLeases.data_planes`) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub config_revision: Gauge,
    pub invalid_objects: Gauge,
    pub invalid_objects_seen: Counter,
    pub hub_lists: Counter,
    pub data_plane_streams: Gauge,
    pub cooldown_reports: Counter,
    pub cooldown_reports_refused: Counter,
    pub cooldown_reports_shed: Counter,
    pub cooldown_reports_coalesced: Counter,
    pub cooldown_reports_deferred: Counter,
    pub cooldown_writes: Counter,
    pub cooldown_write_failures: Counter,
    pub fleet_cooldowns: Gauge,
    pub usage_batches_applied: Counter,
    pub usage_batch_repeats: Counter,
    pub usage_batch_overlaps: Counter,
    pub usage_batch_gaps: Counter,
    pub usage_batches_failed: Counter,
    pub usage_entries: Counter,
    pub usage_apply_conflicts: Counter,
    pub usage_apply_seconds: Histogram,
    pub usage_totals: Gauge,
    pub limits_managed: Gauge,
    pub limit_leases_sent: Counter,
    pub limit_data_planes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let config_revision = Gauge::default();
        registry.register(
            "sluice_config_revision",
            "Revision of the configuration this replica distributes",
            config_revision.clone(),
        );
        let invalid_objects = Gauge::default();
        registry.register(
            "sluice_invalid_objects",
            "Stored values refused for distribution",
            invalid_objects.clone(),
        );
        let invalid_objects_seen = Counter::default();
        registry.register(
            "sluice_invalid_objects_seen",
            "Times a stored value was refused for distribution",
            invalid_objects_seen.clone(),
        );
        let hub_lists = Counter::default();
        registry.register(
            "sluice_hub_lists",
            "Full lists of the store by the hub",
            hub_lists.clone(),
        );
        let data_plane_streams = Gauge::default();
        registry.register(
            "sluice_data_plane_streams",
            "Data-plane streams connected to this replica",
            data_plane_streams.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let cooldown_reports = counter(
            &mut registry,
            "sluice_cooldown_reports",
            "Cooldowns reported by this replica's data planes",
        );
        let cooldown_reports_refused = counter(
            &mut registry,
            "sluice_cooldown_reports_refused",
            "Cooldown reports naming no valid deployment id",
        );
        let cooldown_reports_shed = counter(
            &mut registry,
            "sluice_cooldown_reports_shed",
            "Cooldown reports shed because the writer was too far behind",
        );
        let cooldown_reports_coalesced = counter(
            &mut registry,
            "sluice_cooldown_reports_coalesced",
            "Cooldown reports dropped as not extending what the fleet knows",
        );
        let cooldown_reports_deferred = counter(
            &mut registry,
            "sluice_cooldown_reports_deferred",
            "Cooldown reports held for a write slot or token (rate limit), merged",
        );
        let cooldown_writes = counter(
            &mut registry,
            "sluice_cooldown_writes",
            "Cooldown records written to the store",
        );
        let cooldown_write_failures = counter(
            &mut registry,
            "sluice_cooldown_write_failures",
            "Cooldown writes that failed",
        );
        let fleet_cooldowns = Gauge::default();
        registry.register(
            "sluice_fleet_cooldowns",
            "Cooldowns in force fleet-wide, as this replica last counted",
            fleet_cooldowns.clone(),
        );
        let usage_batches_applied = counter(
            &mut registry,
            "sluice_usage_batches_applied",
            "Usage reports counted",
        );
        let usage_batch_repeats = counter(
            &mut registry,
            "sluice_usage_batch_repeats",
            "Usage reports already counted, answered without counting",
        );
        let usage_batch_overlaps = counter(
            &mut registry,
            "sluice_usage_batch_overlaps",
            "Usage reports partly counted already, answered with the mark to resend from",
        );
        let usage_batch_gaps = counter(
            &mut registry,
            "sluice_usage_batch_gaps",
            "Usage reports counted although records before them never arrived",
        );
        let usage_batches_failed = counter(
            &mut registry,
            "sluice_usage_batches_failed",
            "Usage reports not counted (malformed, too large, store errors)",
        );
        let usage_entries = counter(
            &mut registry,
            "sluice_usage_entries",
            "Usage entries counted",
        );
        let usage_apply_conflicts = counter(
            &mut registry,
            "sluice_usage_apply_conflicts",
            "Usage transactions retried after another writer changed a document",
        );
        // 0.5 ms to ~4 s.
        let usage_apply_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "sluice_usage_apply_seconds",
            "Time to answer a usage report, retries included",
            usage_apply_seconds.clone(),
        );
        let usage_totals = Gauge::default();
        registry.register(
            "sluice_usage_totals",
            "Scopes whose usage totals this replica holds for its data planes",
            usage_totals.clone(),
        );
        let limits_managed = Gauge::default();
        registry.register(
            "sluice_limits_managed",
            "Rate limits this replica leases shares of",
            limits_managed.clone(),
        );
        let limit_leases_sent = counter(
            &mut registry,
            "sluice_limit_leases_sent",
            "Leases (one share of one limit) sent to this replica's data planes",
        );
        let limit_data_planes = Gauge::default();
        registry.register(
            "sluice_limit_data_planes",
            "Data planes counted for the fleet when sharing limits",
            limit_data_planes.clone(),
        );
        Self {
            registry,
            limits_managed,
            limit_leases_sent,
            limit_data_planes,
            usage_batches_applied,
            usage_batch_repeats,
            usage_batch_overlaps,
            usage_batch_gaps,
            usage_batches_failed,
            usage_entries,
            usage_apply_conflicts,
            usage_apply_seconds,
            usage_totals,
            config_revision,
            invalid_objects,
            invalid_objects_seen,
            hub_lists,
            data_plane_streams,
            cooldown_reports,
            cooldown_reports_refused,
            cooldown_reports_shed,
            cooldown_reports_coalesced,
            cooldown_reports_deferred,
            cooldown_writes,
            cooldown_write_failures,
            fleet_cooldowns,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(local = %listener.local_addr()?, "metrics listening (HTTP)");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
                    };
                    Ok::<_, Infallible>(
                        response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
