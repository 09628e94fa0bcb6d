//! Scale benchmark (not a test): a configuration of 1,000,000 keys, 10,000
//! teams, 1,000 deployments and 500 access groups in a real etcd.
//!
//! Prints: the control plane's list-and-build time (until its hub has loaded
//! everything) and memory, next to a raw paged range of the same keys from
//! etcd measured in the same run; the data plane's full load (start to
//! ready, through the stream) and memory; and a one-key change's time from
//! the admin write to the data plane having applied it, with the data
//! plane's own apply duration.
//!
//! Run: `cargo build --release --bins && cargo bench -p sluice-tests --bench scale`
//! (`SLUICE_SCALE_KEYS` overrides the key count.)

use std::time::{Duration, Instant};

use sluice_control_plane::resources::{encode, key_of};
use sluice_control_plane::store::Store;
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_proto::admin::v1::{AccessGroup, Deployment, Key, Team};
use sluice_tests::admin_client::{Admin, Auth, api};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::{EtcdServer, put_all};

const TEAMS: usize = 10_000;
const DEPLOYMENTS: usize = 1_000;
const GROUPS: usize = 500;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keys: usize = std::env::var("SLUICE_SCALE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let etcd = EtcdServer::start().await?;
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        request_timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await?;

    let started = Instant::now();
    let mut items = Vec::new();
    for g in 0..GROUPS {
        let group = AccessGroup {
            name: format!("group-{g}"),
            uid: format!("uid{g:08}"),
            models: vec![format!("model-{}", g % DEPLOYMENTS)],
            ..Default::default()
        };
        items.push((key_of::<AccessGroup>(&group.name), encode(&group)));
    }
    for d in 0..DEPLOYMENTS {
        let dep = Deployment {
            id: format!("dep-{d}"),
            model_name: format!("model-{}", d / 2),
            provider: "mock".into(),
            model: format!("m{d}"),
            access_groups: vec![format!("group-{}", d % GROUPS)],
            ..Default::default()
        };
        items.push((key_of::<Deployment>(&dep.id), encode(&dep)));
    }
    for t in 0..TEAMS {
        let g = format!("group-{}", t % GROUPS);
        let team = Team {
            team_id: format!("team-{t}"),
            access_groups: vec![g.clone()],
            access_group_uids: [(g, format!("uid{:08}", t % GROUPS))].into(),
            ..Default::default()
        };
        items.push((key_of::<Team>(&team.team_id), encode(&team)));
    }
    put_all(&store, std::mem::take(&mut items)).await?;
    for chunk_start in (0..keys).step_by(100_000) {
        let mut items = Vec::with_capacity(100_000);
        for k in chunk_start..(chunk_start + 100_000).min(keys) {
            let plaintext = format!("sk-scale-{k}");
            let key = Key {
                key_id: sluice_control_plane::secrets::sha256_hex(&plaintext),
                key_prefix: "sk-scale-".into(),
                team_id: format!("team-{}", k % TEAMS),
                ..Default::default()
            };
            items.push((key_of::<Key>(&key.key_id), encode(&key)));
        }
        put_all(&store, items).await?;
    }
    println!(
        "populated etcd: {keys} keys, {TEAMS} teams, {DEPLOYMENTS} deployments, {GROUPS} groups in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: the raw paged range of everything the hub lists.
    let t = Instant::now();
    let range = store.range("/sluice/").await?;
    let raw_range = t.elapsed();
    let objects = range.kvs.len();
    drop(range);

    let t = Instant::now();
    let cp = ControlPlane::start_etcd(&etcd.endpoint())?;
    let admin = Admin::connect(&cp.url()).await?;
    let mut dp_service = sluice_proto::admin::v1::data_plane_service_client::DataPlaneServiceClient::with_interceptor(
        admin.channel.clone(),
        Auth,
    )
    .max_decoding_message_size(64 << 20);
    loop {
        let r = dp_service
            .list_data_planes(api::ListDataPlanesRequest::default())
            .await?;
        if r.into_inner().config_revision > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cp_load = t.elapsed();
    let (cp_rss, cp_peak) = cp.rss().unwrap_or_default();

    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let dp = DataPlane::start(&[cp.url()], "scale", dir.path())?;
    dp.wait_ready(Duration::from_secs(600)).await?;
    let dp_load = t.elapsed();
    let dp_apply = dp
        .metric("sluice_config_apply_duration_seconds")
        .await
        .unwrap_or(f64::NAN);
    let (dp_rss, dp_peak) = dp.rss().unwrap_or_default();
    let (cp_rss_after, cp_peak_after) = cp.rss().unwrap_or_default();

    let mut deltas = Vec::new();
    let mut applies = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let rev = admin
            .keys
            .clone()
            .generate_key(api::GenerateKeyRequest {
                key: Some(api::Key {
                    team_id: format!("team-{i}"),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .revision;
        dp.wait_for_revision(rev, Duration::from_secs(60)).await?;
        deltas.push(t.elapsed());
        applies.push(
            dp.metric("sluice_config_apply_duration_seconds")
                .await
                .unwrap_or(f64::NAN),
        );
    }
    deltas.sort();
    applies.sort_by(|a, b| a.total_cmp(b));

    println!(
        "scale: {objects} objects in etcd, on this machine ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("{:<58} {:>12}", "measure", "value");
    println!(
        "{:<58} {:>10.2} s",
        "baseline: raw paged etcd range of /sluice/",
        raw_range.as_secs_f64()
    );
    println!(
        "{:<58} {:>10.2} s  ({:.1}x raw range)",
        "control plane: start -> hub listed and built",
        cp_load.as_secs_f64(),
        cp_load.as_secs_f64() / raw_range.as_secs_f64()
    );
    println!(
        "{:<58} {:>8.0} MiB (peak {:.0})",
        "control plane RSS after load",
        mib(cp_rss),
        mib(cp_peak)
    );
    println!(
        "{:<58} {:>8.0} MiB (peak {:.0})",
        "control plane RSS after serving a full snapshot",
        mib(cp_rss_after),
        mib(cp_peak_after)
    );
    println!(
        "{:<58} {:>10.2} s  (goal <= 2 s)",
        "data plane: start -> ready (full snapshot via stream)",
        dp_load.as_secs_f64()
    );
    println!(
        "{:<58} {:>10.2} s",
        "  of which the control plane's snapshot encode",
        snapshot_encode_ms(&cp.log()).map_or(f64::NAN, |ms| ms / 1000.0)
    );
    println!(
        "{:<58} {:>10.2} s",
        "  of which the data plane's own decode + build + swap", dp_apply
    );
    println!(
        "{:<58} {:>8.0} MiB (peak {:.0}; goal <= 300)",
        "data plane RSS after load",
        mib(dp_rss),
        mib(dp_peak)
    );
    println!(
        "{:<58} {:>10.2} ms",
        "one-key write -> data plane applied, p50 of 20",
        deltas[deltas.len() / 2].as_secs_f64() * 1000.0
    );
    println!(
        "{:<58} {:>10.3} ms  (goal <= 1 ms)",
        "data plane apply of a one-key delta, median",
        applies[applies.len() / 2] * 1000.0
    );
    Ok(())
}

/// How long the control plane took to encode its last full snapshot, from
/// its "snapshot encoded" log line.
fn snapshot_encode_ms(log: &str) -> Option<f64> {
    let line = log.lines().rev().find(|l| l.contains("snapshot encoded"))?;
    let value = line.split_once("took_ms=")?.1.split_whitespace().next()?;
    value.parse().ok()
}
