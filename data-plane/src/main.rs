//! `sluice-data-plane`: serves the OpenAI API from the config the control
//! plane streams to it.

use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "sluice-data-plane", version, about)]
struct Args {
    /// The control plane's gRPC address.
    #[arg(
        long,
        env = "SLUICE_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    control_plane: String,
    /// Address of the OpenAI-compatible HTTP server.
    #[arg(long, env = "SLUICE_LISTEN", default_value = sluice_data_plane::DEFAULT_LISTEN)]
    listen: String,
    /// This data plane's name as the control plane reports it.
    #[arg(long, env = "SLUICE_NODE_ID")]
    node_id: Option<String>,
    /// Where the last good snapshot is kept, to start without a control plane.
    #[arg(long, env = "SLUICE_SNAPSHOT_CACHE")]
    snapshot_cache: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    tracing::warn!(
        control_plane = %args.control_plane,
        listen = %args.listen,
        node_id = ?args.node_id,
        snapshot_cache = ?args.snapshot_cache,
        "the config stream and HTTP server are not implemented yet; exiting without serving"
    );
}
