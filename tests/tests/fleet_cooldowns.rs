//! Fleet-wide cooldowns through the control plane (DESIGN §5): two replicas of
//! the real binary on one real etcd, simulated data planes speaking the real
//! protocol. A cooldown one data plane reports reaches the data planes of the
//! other replica, and the ones that connect later; its record leaves etcd by
//! itself; a burst of reports makes only a handful of writes.

use std::time::{Duration, Instant};

use sluice_control_plane::distribution::cooldowns::{CooldownRecord, key_of};
use sluice_control_plane::store::Store;
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_proto::config::v1::Cooldown;
use sluice_proto::prost::Message;
use sluice_tests::control_plane::{ControlPlane, DATA_PLANE_TOKEN};
use sluice_tests::etcd::EtcdServer;
use sluice_tests::sim_data_plane::{SimDataPlane, SimState};

const WAIT: Duration = Duration::from_secs(10);

async fn etcd_store(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A data plane on `cp` that has received its first configuration.
async fn sim(cp: &ControlPlane, node_id: &str) -> SimDataPlane {
    let mut sim = SimDataPlane::connect(&cp.url(), DATA_PLANE_TOKEN, node_id, SimState::default())
        .await
        .unwrap();
    sim.wait_for(1, WAIT).await.unwrap();
    sim
}

fn cooldown(deployment_id: &str, remaining_ms: u64) -> Cooldown {
    Cooldown {
        deployment_id: deployment_id.into(),
        remaining_ms,
        reason: "rate_limited".into(),
        reporter: String::new(),
    }
}

/// Polls a metric until `done` holds for it, within `within`.
async fn metric_until(
    cp: &ControlPlane,
    name: &str,
    within: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let value = cp.metric(name).await.unwrap_or(0.0);
        if done(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name} still {value} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cooldown_reported_on_one_replica_reaches_every_data_plane_and_expires_by_itself() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp1 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let cp2 = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let store = etcd_store(&etcd).await;
    let a = sim(&cp1, "dp-a").await;
    let mut b = sim(&cp2, "dp-b").await;

    let reported = Instant::now();
    a.report_cooldowns(vec![
        cooldown("gpt-4o-east", 30_000),
        cooldown("gpt-4o-west", 1_500),
    ])
    .await
    .unwrap();

    // B, on the other replica, hears of both, with sensible times left.
    let (east, at) = b.wait_for_cooldown("gpt-4o-east", WAIT).await.unwrap();
    println!(
        "propagation to the other replica's data plane: {:?}",
        at - reported
    );
    assert!(
        (25_000..=30_000).contains(&east.remaining_ms),
        "remaining {}",
        east.remaining_ms
    );
    assert_eq!(east.reporter, "dp-a");
    assert_eq!(east.reason, "rate_limited");
    let (west, _) = b.wait_for_cooldown("gpt-4o-west", WAIT).await.unwrap();

    // An extension (a longer Retry-After, say) reaches B too; a shorter
    // report changes nothing.
    a.report_cooldowns(vec![
        cooldown("gpt-4o-east", 120_000),
        cooldown("gpt-4o-east", 10_000),
    ])
    .await
    .unwrap();
    let (extended, _) = b
        .wait_for_cooldown_where("gpt-4o-east", WAIT, |c| c.remaining_ms > 100_000)
        .await
        .unwrap();
    assert!(extended.remaining_ms <= 120_000);
    let east = extended;
    assert!(
        west.remaining_ms <= 1_500,
        "remaining {}",
        west.remaining_ms
    );

    // The record is in etcd, in this replica's clock.
    let stored = store
        .get(&key_of("gpt-4o-east"))
        .await
        .unwrap()
        .expect("the cooldown is stored");
    let record = CooldownRecord::decode(&stored.value[..]).unwrap();
    assert_eq!(record.deployment_id, "gpt-4o-east");
    assert_eq!(record.reporter, "dp-a");

    // A data plane connecting later gets what is in force with its first
    // configuration: the snapshot, then the cooldowns.
    let mut c = sim(&cp2, "dp-c").await;
    let (late, _) = c.wait_for_cooldown("gpt-4o-east", WAIT).await.unwrap();
    assert!(late.remaining_ms <= east.remaining_ms);
    assert_eq!(&c.state().kinds[..2], ["snapshot", "cooldowns"]);

    // The short one leaves etcd by itself (a 2 s lease, revoked within about
    // a second more): poll with a deadline, since the TTL has to run out.
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.get(&key_of("gpt-4o-west")).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "gpt-4o-west still in etcd after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a data plane connecting now is not told of it.
    let mut d = sim(&cp1, "dp-d").await;
    // Both would come in the one initial message.
    d.wait_for_cooldown("gpt-4o-east", WAIT).await.unwrap();
    assert!(
        d.state()
            .cooldowns
            .iter()
            .all(|(c, _)| c.deployment_id != "gpt-4o-west"),
        "{:?}",
        d.state().cooldowns
    );
    assert!(store.get(&key_of("gpt-4o-east")).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_a_thousand_reports_makes_a_handful_of_writes() {
    let etcd = EtcdServer::start().await.unwrap();
    let cp = ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let store = etcd_store(&etcd).await;
    let planes = [
        sim(&cp, "dp-0").await,
        sim(&cp, "dp-1").await,
        sim(&cp, "dp-2").await,
        sim(&cp, "dp-3").await,
    ];
    // 1,000 reports of one deployment, from four data planes, as fast as
    // they go; each a cooldown of 30 s from its sender's now.
    for i in 0..1000 {
        planes[i % planes.len()]
            .report_cooldowns(vec![cooldown("flaky", 30_000)])
            .await
            .unwrap();
    }
    metric_until(&cp, "sluice_cooldown_reports_total", WAIT, |n| n >= 1000.0).await;
    let writes = metric_until(&cp, "sluice_cooldown_writes_total", WAIT, |n| n >= 1.0).await;
    let deferred = cp
        .metric("sluice_cooldown_reports_deferred_total")
        .await
        .unwrap_or(0.0);
    let coalesced = cp
        .metric("sluice_cooldown_reports_coalesced_total")
        .await
        .unwrap_or(0.0);
    let key = store.get(&key_of("flaky")).await.unwrap().expect("stored");
    println!(
        "1,000 reports: {writes} written (key version {}), {deferred} deferred, {coalesced} coalesced",
        key.version
    );
    // Later reports end milliseconds after the first written one: none is
    // worth a write, none waits for one, so the count is final.
    assert_eq!(deferred, 0.0);
    assert!(key.version <= 5, "{} writes of one key", key.version);
    assert_eq!(key.version as f64, writes);
    assert!(coalesced >= 990.0, "{coalesced} reports coalesced");
    // A report that names no deployment is refused, not written.
    planes[0]
        .report_cooldowns(vec![cooldown("Not An Id", 1_000)])
        .await
        .unwrap();
    metric_until(&cp, "sluice_cooldown_reports_refused_total", WAIT, |n| {
        n >= 1.0
    })
    .await;
}
