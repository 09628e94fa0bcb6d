//! Propagation benchmark (not a test): 100 data-plane streams on one
//! control plane on one etcd; for 200 admin writes, the time from issuing
//! the write to the last data plane applying it (its ACK), p50/p99, next to
//! the write's own latency measured in the same run as the baseline.
//!
//! Run: `cargo build --release --bins && cargo bench -p sluice-tests --bench propagation`

use std::time::{Duration, Instant};

use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::{ControlPlane, DATA_PLANE_TOKEN};
use sluice_tests::etcd::EtcdServer;
use sluice_tests::sim_data_plane::{SimDataPlane, SimState};

const STREAMS: usize = 100;
const WRITES: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let etcd = EtcdServer::start().await?;
    let cp = ControlPlane::start_etcd(&etcd.endpoint())?;
    let admin = Admin::connect(&cp.url()).await?;
    let mut planes = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        planes.push(
            SimDataPlane::connect(
                &cp.url(),
                DATA_PLANE_TOKEN,
                &format!("sim-{i:03}"),
                SimState::default(),
            )
            .await?,
        );
    }
    let mut writes = Vec::with_capacity(WRITES);
    let mut propagation = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let issued = Instant::now();
        let revision = admin
            .create_team(api::Team {
                team_id: format!("bench-{i:04}"),
                models: vec!["*".into()],
                ..Default::default()
            })
            .await?;
        writes.push(issued.elapsed());
        for p in &mut planes {
            p.wait_for(revision, Duration::from_secs(10)).await?;
        }
        let last = planes
            .iter()
            .filter_map(|p| p.state().applied_at(revision))
            .max()
            .unwrap_or_else(Instant::now);
        propagation.push(last.duration_since(issued));
    }
    writes.sort();
    propagation.sort();
    let (w50, w99) = (percentile(&writes, 0.5), percentile(&writes, 0.99));
    let (p50, p99) = (
        percentile(&propagation, 0.5),
        percentile(&propagation, 0.99),
    );
    println!(
        "propagation: {STREAMS} streams, {WRITES} sequential CreateTeam writes, one control plane, one etcd"
    );
    println!("{:<44} {:>9} {:>9}", "", "p50 ms", "p99 ms");
    println!(
        "{:<44} {:>9.2} {:>9.2}",
        "baseline: admin write (issue -> committed)",
        ms(w50),
        ms(w99)
    );
    println!(
        "{:<44} {:>9.2} {:>9.2}",
        "issue -> last of 100 data planes applied",
        ms(p50),
        ms(p99)
    );
    println!(
        "ratio propagation / write: p50 {:.1}x, p99 {:.1}x   (goal: p99 <= 100 ms: {})",
        ms(p50) / ms(w50),
        ms(p99) / ms(w99),
        if p99 <= Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
