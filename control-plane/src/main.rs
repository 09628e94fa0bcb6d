//! `sluice-control-plane`: serves the admin API and config distribution
//! over etcd or the embedded store; `import FILE` loads a LiteLLM
//! config.yaml into a running control plane.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sluice_control_plane::auth::MasterKey;
use sluice_control_plane::distribution::LimitSettings;
use sluice_control_plane::server::{ServerConfig, ServerTls, serve};
use sluice_control_plane::store::Store;
use sluice_control_plane::store::embedded::EmbeddedStore;
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore, EtcdTls};
use sluice_control_plane::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use sluice_proto::admin::v1::ImportLiteLlmConfigRequest;
use sluice_proto::admin::v1::config_service_client::ConfigServiceClient;

#[derive(Parser)]
#[command(
    name = "sluice-control-plane",
    version,
    about = "Sluice's control plane: the admin API over etcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Import a LiteLLM config.yaml into a running control plane (idempotent).
    Import {
        /// The config.yaml to import.
        file: PathBuf,
        /// The control plane to import into.
        #[arg(
            long,
            env = "SLUICE_CONTROL_PLANE",
            default_value = "http://127.0.0.1:50051"
        )]
        control_plane: String,
        /// File holding the master key (else SLUICE_MASTER_KEY).
        #[arg(long, env = "SLUICE_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
        /// PEM CA of the control plane's certificate, for an https:// control plane.
        #[arg(long, env = "SLUICE_CONTROL_PLANE_CA_FILE")]
        control_plane_ca_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// etcd client URLs, comma-separated. Without it, the embedded store in --data-dir is used.
    #[arg(long, env = "SLUICE_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// etcd user name; the password comes from SLUICE_ETCD_PASSWORD.
    #[arg(long, env = "SLUICE_ETCD_USER")]
    etcd_user: Option<String>,
    /// PEM file of the CA that signed etcd's certificate. TLS to etcd is used when this or any
    /// other --etcd-*-file/--etcd-tls-domain flag is set, or an endpoint is https://.
    #[arg(long, env = "SLUICE_ETCD_CA_FILE")]
    etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd's mutual TLS (--client-cert-auth); needs --etcd-key-file.
    #[arg(long, env = "SLUICE_ETCD_CERT_FILE", requires = "etcd_key_file")]
    etcd_cert_file: Option<PathBuf>,
    /// PEM private key of --etcd-cert-file.
    #[arg(long, env = "SLUICE_ETCD_KEY_FILE", requires = "etcd_cert_file")]
    etcd_key_file: Option<PathBuf>,
    /// Name to check etcd's certificate against, when it is not the endpoint's host.
    #[arg(long, env = "SLUICE_ETCD_TLS_DOMAIN")]
    etcd_tls_domain: Option<String>,
    /// Directory of the embedded store (when --etcd is not given).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "SLUICE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// File holding the master key (else SLUICE_MASTER_KEY). Never a flag value: it would show in `ps`.
    #[arg(long, env = "SLUICE_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics (GET /metrics), e.g. 0.0.0.0:9090; off when unset.
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// This replica's name in data-plane status (default: hostname and port).
    #[arg(long, env = "SLUICE_REPLICA_ID")]
    replica_id: Option<String>,
    /// Deadline of every store call, in milliseconds.
    #[arg(long, env = "SLUICE_STORE_TIMEOUT_MS", default_value_t = 5000)]
    store_timeout_ms: u64,
    /// How often the store is probed for grpc.health.v1, in milliseconds.
    #[arg(long, env = "SLUICE_HEALTH_INTERVAL_MS", default_value_t = 1000)]
    health_interval_ms: u64,
    /// PEM certificate chain of the gRPC server: it serves TLS when this is set
    /// (with --tls-key-file).
    #[arg(long, env = "SLUICE_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "SLUICE_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA of data planes' client certificates: the config stream then requires one
    /// (mutual TLS). Admin calls still need only the master key.
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    tls_client_ca_file: Option<PathBuf>,
    /// How long, in milliseconds, SIGTERM's drain may take: config streams end at once (data
    /// planes move to another replica), in-flight admin calls finish; what is still open after
    /// this is cut, and logged. Keep it under the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// How long, in milliseconds, a data plane that went away keeps its shares of rate limits
    /// counted (it keeps applying them while cut off) before they are given to the others.
    /// Two RPM windows by default.
    #[arg(long, env = "SLUICE_LIMIT_LEASE_GRACE_MS", default_value_t = 120_000)]
    limit_lease_grace_ms: u64,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Reads a PEM file named by a flag; the error names the flag and the file.
fn read_pem(flag: &str, path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        bail!("{flag} {} is not a PEM file", path.display());
    }
    Ok(pem)
}

impl ServeArgs {
    fn server_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        Ok(Some(ServerTls {
            cert_pem: read_pem("--tls-cert-file", cert)?,
            key_pem: read_pem("--tls-key-file", key)?,
            client_ca_pem: self
                .tls_client_ca_file
                .as_ref()
                .map(|ca| read_pem("--tls-client-ca-file", ca))
                .transpose()?,
        }))
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never into a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The master key from `--master-key-file` or `SLUICE_MASTER_KEY`.
fn master_key(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let key = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the master key file {}", path.display()))?,
        None => std::env::var("SLUICE_MASTER_KEY").unwrap_or_default(),
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        bail!(
            "no master key: set SLUICE_MASTER_KEY (for example `export SLUICE_MASTER_KEY=sk-$(openssl rand -hex 24)`) \
             or pass --master-key-file FILE"
        );
    }
    Ok(key)
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when it is first awaited: a signal arriving while the server
/// starts (connecting to etcd, say) must stop it cleanly, not kill it.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
        .ok();
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for Ctrl-C"))
        .ok();
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run_server(args: ServeArgs) -> anyhow::Result<()> {
    // One stream per data plane, and a fleet has thousands: the soft limit a
    // container often starts with (1,024) would refuse them long before the
    // hard one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let stop_requested = shutdown_signal();
    let key = master_key(args.master_key_file.as_ref())?;
    let tls = args.server_tls()?;
    let timeout = Duration::from_millis(args.store_timeout_ms);
    let store: Arc<dyn Store> = if args.etcd.is_empty() {
        tracing::info!(data_dir = %args.data_dir.display(), "using the embedded store");
        if args.etcd_ca_file.is_some()
            || args.etcd_cert_file.is_some()
            || args.etcd_tls_domain.is_some()
        {
            tracing::warn!("etcd TLS settings are ignored: no --etcd given");
        }
        Arc::new(EmbeddedStore::open(&args.data_dir).with_context(|| {
            format!("opening the embedded store in {}", args.data_dir.display())
        })?)
    } else {
        let user = args.etcd_user.map(|name| {
            let password = std::env::var("SLUICE_ETCD_PASSWORD").unwrap_or_default();
            (name, password)
        });
        let tls = EtcdTls {
            ca_file: args.etcd_ca_file,
            cert_file: args.etcd_cert_file,
            key_file: args.etcd_key_file,
            domain: args.etcd_tls_domain,
        };
        // The store also turns TLS on for https:// endpoints.
        let tls = (tls != EtcdTls::default()).then_some(tls);
        tracing::info!(endpoints = ?args.etcd, tls = ?tls, "connecting to etcd");
        let options = EtcdOptions {
            endpoints: args.etcd.clone(),
            user,
            request_timeout: timeout,
            connect_timeout: Duration::from_secs(30),
            tls,
        };
        Arc::new(
            EtcdStore::connect(options)
                .await
                .with_context(|| format!("connecting to etcd at {}", args.etcd.join(",")))?,
        )
    };
    let replica_id = args.replica_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "control-plane".to_string());
        format!("{host}:{}", args.listen.port())
    });
    let data_plane_token = std::env::var("SLUICE_DATA_PLANE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let config = ServerConfig {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        replica_id,
        data_plane_token,
        master_key: MasterKey::new(key),
        health_interval: Duration::from_millis(args.health_interval_ms),
        tls,
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        limits: LimitSettings {
            grace: Duration::from_millis(args.limit_lease_grace_ms),
            ..LimitSettings::default()
        },
    };
    serve(store, config, stop_requested).await?;
    Ok(())
}

async fn run_import(
    file: PathBuf,
    control_plane: String,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let key = master_key(key_file.as_ref())?;
    let yaml =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(control_plane.clone())
        .with_context(|| format!("bad control-plane URL {control_plane:?}"))?;
    if let Some(ca) = &ca_file {
        let ca = read_pem("--control-plane-ca-file", ca)?;
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            )
            .context("TLS settings for the control plane")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to the control plane at {control_plane}"))?;
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {key}")
        .parse()
        .context("the master key is not a valid header value")?;
    let mut client =
        ConfigServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", header.clone());
            Ok(req)
        });
    let resp = client
        .import_lite_llm_config(ImportLiteLlmConfigRequest { yaml })
        .await
        .map_err(|s| anyhow::anyhow!("import refused ({:?}): {}", s.code(), s.message()))?
        .into_inner();
    println!(
        "imported {} at revision {}: {} created, {} updated, {} unchanged",
        file.display(),
        resp.revision,
        resp.created.len(),
        resp.updated.len(),
        resp.unchanged.len()
    );
    for w in &resp.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

/// How long exiting waits for blocking work still running (a snapshot
/// being encoded for a stream that has ended): the drain is over by then.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.serve.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Import {
                file,
                control_plane,
                master_key_file,
                control_plane_ca_file,
            }) => run_import(file, control_plane, master_key_file, control_plane_ca_file).await,
            None => run_server(cli.serve).await,
        }
    });
    // Dropping the runtime would wait for every blocking task to return,
    // however long: --shutdown-grace-ms must bound the exit.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}
