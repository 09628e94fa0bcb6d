//! The control plane's gRPC server: every admin service behind the master
//! key, server reflection (v1 and v1alpha, so any grpcurl works without
//! .proto files), `grpc.health.v1`, which follows the store's health (and
//! [`LIVENESS_SERVICE`], which does not), and config distribution to data
//! planes (authenticated by data-plane token). Shutdown is bounded:
//! [`crate::shutdown`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use sluice_proto::admin::v1::access_group_service_server::AccessGroupServiceServer;
use sluice_proto::admin::v1::config_service_server::ConfigServiceServer;
use sluice_proto::admin::v1::credit_service_server::CreditServiceServer;
use sluice_proto::admin::v1::data_plane_service_server::DataPlaneServiceServer;
use sluice_proto::admin::v1::key_service_server::KeyServiceServer;
use sluice_proto::admin::v1::model_service_server::ModelServiceServer;
use sluice_proto::admin::v1::organization_service_server::OrganizationServiceServer;
use sluice_proto::admin::v1::router_service_server::RouterServiceServer;
use sluice_proto::admin::v1::team_service_server::TeamServiceServer;
use sluice_proto::admin::v1::usage_service_server::UsageServiceServer;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::Admin;
use crate::auth::MasterKey;
use crate::catalog::Catalog;
use crate::distribution::{ConfigDiscoveryService, Distribution};
use crate::metrics::Metrics;
use crate::shutdown::InFlight;
use crate::store::Store;

/// Every admin service name, for health reporting.
const SERVICES: &[&str] = &[
    KeyServiceServer::<Admin>::NAME,
    TeamServiceServer::<Admin>::NAME,
    OrganizationServiceServer::<Admin>::NAME,
    AccessGroupServiceServer::<Admin>::NAME,
    ModelServiceServer::<Admin>::NAME,
    RouterServiceServer::<Admin>::NAME,
    CreditServiceServer::<Admin>::NAME,
    UsageServiceServer::<Admin>::NAME,
    ConfigServiceServer::<Admin>::NAME,
    DataPlaneServiceServer::<Admin>::NAME,
];

/// The `grpc.health.v1` service name that is SERVING for as long as the
/// process runs, whatever the store's health: for liveness probes. An etcd
/// outage must not get healthy pods restarted (a restart would not end it);
/// the overall status (`""`) and each admin service's follow the store, for
/// readiness.
pub const LIVENESS_SERVICE: &str = "liveness";

/// The longest a shutdown spends writing the ended streams' disconnects: a
/// record left unwritten is read as disconnected anyway once its heartbeat
/// is stale (`status::STALE_AFTER`), so a struggling store is not waited on.
const STATUS_FLUSH: Duration = Duration::from_secs(2);

/// Largest admin request accepted (a config.yaml import is the biggest).
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("TLS: {0}")]
    Tls(tonic::transport::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The gRPC server's TLS: its certificate, and optionally the CA of data
/// planes' client certificates, which makes the config stream require one
/// (mutual TLS). Admin calls need no client certificate: the master key
/// authenticates them.
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Vec<u8>,
    /// PEM CA certificate(s) of data-plane client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    fn config(&self) -> tonic::transport::ServerTlsConfig {
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem),
        );
        if let Some(ca) = &self.client_ca_pem {
            // Optional at the handshake so admin clients (grpcurl with the
            // master key) connect without one; the config stream refuses
            // data planes that did not present one.
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        tls
    }
}

pub struct ServerConfig {
    pub listen: SocketAddr,
    /// This replica's name in data-plane status.
    pub replica_id: String,
    /// `SLUICE_DATA_PLANE_TOKEN`, accepted besides tokens made through the API.
    pub data_plane_token: Option<String>,
    pub master_key: MasterKey,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How often the store is probed for `grpc.health.v1`.
    pub health_interval: Duration,
    pub tls: Option<ServerTls>,
    /// How long the drain after `shutdown` may take; then what is still
    /// open is cut.
    pub shutdown_grace: Duration,
    /// How rate-limit shares are timed: the grace period of a data plane
    /// that went away (`--limit-lease-grace-ms`), the allocation tick.
    pub limits: crate::distribution::LimitSettings,
}

/// Serves until `shutdown` completes, then stops accepting connections and
/// calls, ends every config stream (`UNAVAILABLE`), lets in-flight calls
/// finish and writes the streams' disconnects, within
/// [`ServerConfig::shutdown_grace`].
pub async fn serve(
    store: Arc<dyn Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(%local, "control plane listening (gRPC)");

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    let mut monitor = tokio::spawn(watch_store_health(
        store.clone(),
        reporter.clone(),
        config.health_interval,
    ));

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sluice_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Each builder describes only its own version; register both so
            // that either version lists (and describes) both.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = config.metrics_listen {
        let listener_metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, listener_metrics).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics");
            }
        });
    }
    let mutual_tls = config
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_pem.is_some());
    let stopping = CancellationToken::new();
    let distribution = Distribution::start(
        store.clone(),
        config.replica_id.clone(),
        config.data_plane_token.clone(),
        mutual_tls,
        metrics,
        config.limits,
        stopping.clone(),
    );
    let registry = distribution.registry.clone();
    let discovery = ConfigDiscoveryService::new(distribution.discovery());
    let admin = Admin::start(Catalog::new(store), distribution);
    let auth = config.master_key;
    macro_rules! guarded {
        ($server:ident) => {
            InterceptedService::new(
                $server::new(admin.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
                auth.clone(),
            )
        };
    }
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        server = server.tls_config(tls.config()).map_err(ServeError::Tls)?;
    }
    let in_flight = InFlight::default();
    let server = server
        .layer(in_flight.clone())
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(discovery)
        .add_service(guarded!(KeyServiceServer))
        .add_service(guarded!(TeamServiceServer))
        .add_service(guarded!(OrganizationServiceServer))
        .add_service(guarded!(AccessGroupServiceServer))
        .add_service(guarded!(ModelServiceServer))
        .add_service(guarded!(RouterServiceServer))
        .add_service(guarded!(CreditServiceServer))
        .add_service(guarded!(UsageServiceServer))
        .add_service(guarded!(ConfigServiceServer))
        .add_service(guarded!(DataPlaneServiceServer))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a response written in two segments waits
            // for the client's delayed ACK (~40 ms) under Nagle's algorithm.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopping.clone().cancelled_owned(),
        );
    let mut server = std::pin::pin!(server);
    tokio::select! {
        // Before any signal, the server ends only by failing.
        result = &mut server => {
            monitor.abort();
            return Ok(result?);
        }
        () = shutdown => {}
    }

    let started = Instant::now();
    let deadline = started + config.shutdown_grace;
    tracing::info!(
        streams = registry.streams(),
        calls = ?in_flight.open(),
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "shutting down: ending config streams, finishing in-flight calls"
    );
    // Not ready any more, for health watchers on connections already open
    // (GOAWAY keeps new calls off); liveness stays SERVING.
    monitor.abort();
    let _ = (&mut monitor).await;
    set_health(&reporter, ServingStatus::NotServing).await;
    stopping.cancel();
    let result = match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            // Dropping the server leaves its connection tasks to the
            // runtime's shutdown, which ends them.
            tracing::warn!(
                grace_ms = config.shutdown_grace.as_millis() as u64,
                cut = ?in_flight.open(),
                "the drain did not finish within --shutdown-grace-ms: cutting the calls still open"
            );
            Ok(())
        }
    };
    // The streams have ended: their disconnects are being written.
    let flush_by = deadline.min(Instant::now() + STATUS_FLUSH);
    if tokio::time::timeout_at(flush_by, registry.flushed())
        .await
        .is_err()
    {
        tracing::warn!(
            "not every data plane's disconnect was written before exit: \
             the records read as disconnected once their heartbeat is stale"
        );
    }
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        "control plane stopped"
    );
    Ok(result?)
}

/// Sets the overall status and every admin service's.
async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Reports SERVING while the store answers, NOT_SERVING while it does not.
async fn watch_store_health(store: Arc<dyn Store>, reporter: HealthReporter, every: Duration) {
    let mut last = None;
    loop {
        let status = match store.revision().await {
            Ok(_) => ServingStatus::Serving,
            Err(e) => {
                if last != Some(ServingStatus::NotServing) {
                    tracing::warn!(error = %e, "store unreachable: reporting NOT_SERVING");
                }
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            if status == ServingStatus::Serving && last.is_some() {
                tracing::info!("store reachable again: reporting SERVING");
            }
            set_health(&reporter, status).await;
            last = Some(status);
        }
        tokio::time::sleep(every).await;
    }
}
