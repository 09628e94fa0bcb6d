//! `sluice-data-plane`: serves HTTP from the config the control plane streams
//! to it, starting from the snapshot cache when there is one.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use sluice_data_plane::DEFAULT_LISTEN;
use sluice_data_plane::config::applied::AppliedConfig;
use sluice_data_plane::config::cache;
use sluice_data_plane::config::discovery::{
    DEFAULT_CONTROL_PLANE, Discovery, DiscoveryOptions, TOKEN_ENV, UsageHeard, UsageStream,
};
use sluice_data_plane::config::secrets::Secret;
use sluice_data_plane::http::{self, HttpState, Limits};
use sluice_data_plane::metrics::Metrics;
use sluice_data_plane::request::parse::DEFAULT_MAX_BODY_BYTES;
use sluice_data_plane::router::Router;
use sluice_data_plane::serve::log_format::Lines;
use sluice_data_plane::serve::log_writer::LogWriter;
use sluice_data_plane::serve::workers::{self, Workers};
use sluice_data_plane::tls::{self, ControlPlaneTls, PemFile};
use sluice_data_plane::upstream::{self, Upstream};
use sluice_data_plane::usage::Metering;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(name = "sluice-data-plane", version, about)]
struct Args {
    /// Control-plane gRPC URLs, comma-separated; each is tried in turn, and
    /// each address a name resolves to.
    #[arg(
        long,
        env = "SLUICE_CONTROL_PLANE",
        default_value = DEFAULT_CONTROL_PLANE,
        value_delimiter = ','
    )]
    control_plane: Vec<String>,
    /// Address of the HTTP server.
    #[arg(long, env = "SLUICE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// This data plane's name as the control plane reports it (default: the
    /// host name, which is the pod name in Kubernetes).
    #[arg(long, env = "SLUICE_NODE_ID")]
    node_id: Option<String>,
    /// A label the control plane reports with this data plane, `key=value`;
    /// repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Where the last good snapshot is kept, to start without a control plane.
    #[arg(long, env = "SLUICE_SNAPSHOT_CACHE")]
    snapshot_cache: Option<PathBuf>,
    /// Where every answered request's usage is journaled before it is
    /// reported (DESIGN §7). Default: the --snapshot-cache file's name with
    /// `.usage` added, beside it; with neither, usage is kept in memory only and a
    /// restart loses what was not yet reported.
    #[arg(long, env = "SLUICE_USAGE_JOURNAL")]
    usage_journal: Option<PathBuf>,
    /// On SIGTERM, how long to keep reporting usage to the control plane
    /// after the last request is answered, in milliseconds; what is left
    /// stays journaled and is reported after the restart.
    #[arg(long, env = "SLUICE_USAGE_DRAIN_MS", default_value_t = 3000)]
    usage_drain_ms: u64,
    /// Request bodies above this many bytes are refused with 413.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: u64,
    /// How long a client may take to send a request's headers, in
    /// milliseconds; also how long an HTTP/1 keep-alive connection may wait
    /// for its next request.
    #[arg(long, env = "SLUICE_HEADER_READ_TIMEOUT_MS", default_value_t = millis(http::DEFAULT_HEADER_READ_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body after its
    /// headers, in milliseconds; slower ones get 408.
    #[arg(long, env = "SLUICE_BODY_READ_TIMEOUT_MS", default_value_t = millis(http::DEFAULT_BODY_READ_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_ms: u64,
    /// How long a connection may go without a request in flight before it is
    /// closed, in milliseconds.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_MS", default_value_t = millis(http::DEFAULT_IDLE_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,
    /// PEM CA of the control plane's certificate; required by https://
    /// control-plane URLs (no system trust roots are built in).
    #[arg(long, env = "SLUICE_CONTROL_PLANE_CA_FILE")]
    control_plane_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to the control plane (mutual TLS).
    #[arg(long, env = "SLUICE_CONTROL_PLANE_CERT_FILE", requires_all = ["control_plane_key_file", "control_plane_ca_file"])]
    control_plane_cert_file: Option<PathBuf>,
    /// PEM private key of --control-plane-cert-file.
    #[arg(
        long,
        env = "SLUICE_CONTROL_PLANE_KEY_FILE",
        requires = "control_plane_cert_file"
    )]
    control_plane_key_file: Option<PathBuf>,
    /// Name the control plane's certificate is checked against, when not the
    /// URL's host.
    #[arg(
        long,
        env = "SLUICE_CONTROL_PLANE_TLS_DOMAIN",
        requires = "control_plane_ca_file"
    )]
    control_plane_tls_domain: Option<String>,
    /// PEM certificate chain of the HTTP server: it serves HTTPS when set
    /// (with --tls-key-file).
    #[arg(long, env = "SLUICE_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "SLUICE_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA certificates trusted for HTTPS upstreams besides the system's
    /// (model servers behind a private CA).
    #[arg(long, env = "SLUICE_UPSTREAM_CA_FILE")]
    upstream_ca_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Request worker threads, each serving its own connections (default:
    /// the cores this process may use).
    #[arg(long, env = "SLUICE_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Logs go to stderr through [`LogWriter`]: request lines in batches,
/// everything else at once; colours only on a terminal. The writer is
/// returned to be flushed periodically and at exit, and is flushed before a
/// panic message.
fn init_tracing(format: LogFormat) -> LogWriter {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = LogWriter::stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer.clone());
    match format {
        LogFormat::Text => builder.map_event_format(Lines::text).init(),
        LogFormat::Json => builder.json().map_event_format(Lines::json).init(),
    }
    let on_panic = writer.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        on_panic.flush();
        default_hook(info);
    }));
    writer
}

/// The host name: `HOSTNAME` (set in every Kubernetes pod), else the kernel's.
fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when it is first awaited: a signal arriving while the server
/// starts must stop it cleanly, not kill it.
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

/// The config stream's TLS settings, when a CA is given.
fn control_plane_tls(args: &Args) -> anyhow::Result<Option<ControlPlaneTls>> {
    let Some(ca) = &args.control_plane_ca_file else {
        return Ok(None);
    };
    let identity = match (&args.control_plane_cert_file, &args.control_plane_key_file) {
        (Some(cert), Some(key)) => Some((
            PemFile::read("--control-plane-cert-file", cert)?,
            PemFile::read("--control-plane-key-file", key)?,
        )),
        _ => None,
    };
    Ok(Some(ControlPlaneTls {
        ca: PemFile::read("--control-plane-ca-file", ca)?,
        identity,
        domain: args.control_plane_tls_domain.clone(),
    }))
}

/// Starts from the cache file if it holds a valid config; otherwise says
/// why in the log, the metrics and readiness, and waits for the stream.
fn restore_cache(path: &Path, applied: &AppliedConfig, metrics: &Metrics) {
    let refused = |error: String| {
        metrics.cache_load_failed();
        tracing::error!(path = %path.display(), %error, "snapshot cache refused; waiting for the control plane");
        applied.set_not_ready_reason(format!(
            "the snapshot cache was refused ({error}); waiting for the first configuration \
             from the control plane"
        ));
    };
    match cache::read(path) {
        Ok(None) => {
            tracing::info!(path = %path.display(), "no snapshot cache yet");
        }
        Ok(Some(cached)) => match applied.restore(cached.snapshot, cached.written_at) {
            Ok(revision) => {
                tracing::info!(path = %path.display(), revision, "serving from the snapshot cache until the control plane answers");
            }
            Err(e) => refused(format!("{} holds an invalid snapshot: {e}", path.display())),
        },
        Err(e) => refused(e.to_string()),
    }
}

// Requests are served by `workers`, each on its own runtime; this one runs
// the config stream, the snapshot cache and signals, on a thread of its own
// so the stream starts at once, in parallel with the rest of the start-up.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    sluice_data_plane::serve::allocator::tune();
    let args = Args::parse();
    let log_writer = init_tracing(args.log_format);
    // Each client connection and each upstream one is a file, and a
    // container's soft limit is often 1,024 (containerd 2 keeps systemd's
    // 1024:524288, expecting servers to raise their own): connections would
    // be refused long before the machine runs short.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let stop_requested = shutdown_signal();
    let flusher = tokio::spawn(log_writer.clone().flush_periodically());
    let stream_tls = control_plane_tls(&args)?;
    let https = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::acceptor(
            &PemFile::read("--tls-cert-file", cert)?,
            &PemFile::read("--tls-key-file", key)?,
        )?),
        _ => None,
    };
    let state_tls_on = https.is_some();

    let token = std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    if token.is_none() {
        tracing::warn!(
            "{TOKEN_ENV} is not set: the control plane will refuse the config stream, \
             and /debug/config is disabled"
        );
    }
    let node_id = match args.node_id.or_else(hostname) {
        Some(id) => id,
        None => bail!("no node id: pass --node-id or set SLUICE_NODE_ID"),
    };
    let labels: HashMap<String, String> = args.labels.into_iter().collect();
    let mut options = DiscoveryOptions::new(args.control_plane, node_id.clone());
    options.labels = labels;
    options.token = token.clone();
    options.tls = stream_tls;
    let discovery = Discovery::new(options).context("checking --control-plane")?;

    let metrics = Arc::new(Metrics::new());
    let applied = Arc::new(AppliedConfig::new(Arc::clone(&metrics)));
    if let Some(path) = &args.snapshot_cache {
        let (applied, metrics, path) = (Arc::clone(&applied), Arc::clone(&metrics), path.clone());
        // Reading and validating a large cache is CPU and disk work.
        tokio::task::spawn_blocking(move || restore_cache(&path, &applied, &metrics))
            .await
            .context("loading the snapshot cache")?;
    }

    let (listener, local) = http::bind(&args.listen)
        .await
        .with_context(|| format!("binding the HTTP server to {}", args.listen))?;
    tracing::info!(
        listen = %local,
        node_id = %node_id,
        https = state_tls_on,
        version = env!("CARGO_PKG_VERSION"),
        "sluice data plane listening"
    );

    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    // Subscribed after the restore: the cache is not rewritten with what was
    // just read from it.
    let cache_writer = args.snapshot_cache.clone().map(|path| {
        tokio::spawn(cache::run_writer(
            path,
            applied.subscribe(),
            Arc::clone(&metrics),
            until_stopped(),
        ))
    });
    let (router, reports) = Router::new();
    let fleet = router.fleet(reports, Arc::clone(&metrics));
    let journal = args.usage_journal.clone().or_else(|| {
        args.snapshot_cache.as_ref().map(|cache| {
            let mut name = cache.clone().into_os_string();
            name.push(".usage");
            PathBuf::from(name)
        })
    });
    if journal.is_none() {
        tracing::warn!(
            "no --usage-journal or --snapshot-cache: usage is kept in memory only, and a \
             restart loses what was not yet reported"
        );
    }
    let (usage, link) = {
        let (journal, applied, metrics) =
            (journal.clone(), Arc::clone(&applied), Arc::clone(&metrics));
        tokio::task::spawn_blocking(move || {
            Metering::start(journal.as_deref(), applied.current().as_deref(), metrics)
        })
        .await
        .context("opening the usage journal")??
    };
    let usage_stream = UsageStream {
        reports: link.reports,
        demands: link.demands,
        heard: {
            let metering = Arc::clone(&link.metering);
            Box::new(move |heard| match heard {
                UsageHeard::Counted(ack) => metering.counted(ack),
                UsageHeard::Totals(totals) => metering.totals(&totals),
                UsageHeard::Leases(leases) => metering.leased(&leases),
            })
        },
    };
    let stream = tokio::spawn(discovery.run_with(
        Arc::clone(&applied),
        Arc::clone(&metrics),
        fleet,
        usage_stream,
    ));
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
    };
    let count = args
        .workers
        .map_or_else(workers::default_count, usize::from);
    let upstream_roots = match &args.upstream_ca_file {
        Some(path) => PemFile::read("--upstream-ca-file", path)?.certificates()?,
        None => Vec::new(),
    };
    let upstream_tls = upstream::Tls::new(&upstream_roots)?;
    let states = (0..count).map(|_| {
        Ok(HttpState {
            applied: Arc::clone(&applied),
            metrics: Arc::clone(&metrics),
            token: token.clone(),
            upstream: Upstream::new(&upstream_tls)?,
            router: Arc::clone(&router),
            usage: Arc::clone(&usage),
            limits,
            tls: https.clone(),
        })
    });
    let mut workers = Workers::start(listener, states, stop.subscribe())
        .context("starting the request workers")?;
    tracing::debug!(workers = workers.count(), "request workers started");

    let failed = tokio::select! {
        () = stop_requested => None,
        worker = workers.one_ended() => worker,
    };
    if let Some(worker) = failed {
        tracing::error!(
            worker,
            "a request worker stopped unexpectedly; shutting down"
        );
    }
    tracing::info!("shutting down: draining HTTP requests, saving the snapshot cache");
    let _ = stop.send(true);
    workers.join().await;
    // Every answer is out: its usage is journaled; report what can be
    // reported while the stream is still up.
    let drain = Duration::from_millis(args.usage_drain_ms);
    let drained = {
        let usage = Arc::clone(&usage);
        tokio::task::spawn_blocking(move || usage.drain(drain)).await
    };
    match drained {
        Ok(Some(d)) if d.unreported == 0 => tracing::info!("usage reported"),
        Ok(Some(d)) => tracing::warn!(
            unreported = d.unreported,
            "usage not yet reported stays journaled, for after the restart"
        ),
        _ => tracing::warn!("the usage thread did not answer the drain"),
    }
    stream.abort();
    if let Some(writer) = cache_writer {
        let _ = writer.await;
    }
    tracing::info!("stopped");
    flusher.abort();
    log_writer.flush();
    match failed {
        Some(worker) => bail!("request worker {worker} stopped unexpectedly"),
        None => Ok(()),
    }
}
