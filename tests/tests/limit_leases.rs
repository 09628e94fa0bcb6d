//! Rate limits across data planes through the control plane (DESIGN §7): the
//! real binary on a real etcd, three simulated data planes speaking the real
//! protocol, each applying a lease the moment it arrives. They demand one
//! key's RPM 60 unevenly: what they apply never sums past 60, the busy one
//! gets most, `data_planes` is 3; one leaves, and once its grace period
//! (shortened by `--limit-lease-grace-ms`) is over its share goes to the
//! others.

use std::time::{Duration, Instant};

use sluice_proto::config::v1::{Demand, LimitDemand, LimitKind, UsageScope};
use sluice_tests::control_plane::{ControlPlane, DATA_PLANE_TOKEN};
use sluice_tests::etcd::EtcdServer;
use sluice_tests::sim_data_plane::{SimDataPlane, SimState};

const WAIT: Duration = Duration::from_secs(10);
const LIMIT: u64 = 60;
const GRACE: Duration = Duration::from_secs(4);
const KEY: &str = "k-limited";

fn share(s: &SimState) -> u64 {
    s.share_of(UsageScope::Key as i32, KEY, LimitKind::Rpm as i32, LIMIT)
}

/// What a data plane using `used` of its share and refused `refused` says.
async fn demand(sim: &SimDataPlane, used: u64, refused: u64) {
    let held = share(&sim.state());
    sim.send_limit_demand(LimitDemand {
        demands: vec![Demand {
            scope: UsageScope::Key as i32,
            id: KEY.into(),
            kind: LimitKind::Rpm as i32,
            limit: LIMIT,
            used: used.min(held),
            held,
            refused,
        }],
    })
    .await
    .unwrap();
}

/// Every share each sim applied, merged in time order: the sum applied at
/// each moment since `from` (each starting at what it applied then).
fn sums_since(sims: &[&SimState], from: Instant, start: &[u64]) -> Vec<u64> {
    let mut events: Vec<(Instant, usize, u64)> = Vec::new();
    for (i, s) in sims.iter().enumerate() {
        for (leases, at) in &s.limit_leases {
            if *at < from {
                continue;
            }
            for l in &leases.leases {
                if l.id == KEY {
                    events.push((*at, i, l.share));
                }
            }
        }
    }
    events.sort_by_key(|e| e.0);
    let mut applied = start.to_vec();
    events
        .into_iter()
        .map(|(_, i, s)| {
            applied[i] = s;
            applied.iter().sum()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shares_follow_demand_never_pass_the_limit_and_a_departed_share_is_freed_after_grace() {
    let etcd = EtcdServer::start().await.unwrap();
    let grace_ms = GRACE.as_millis().to_string();
    let cp = ControlPlane::start_etcd_with(
        &etcd.endpoint(),
        ["--limit-lease-grace-ms", grace_ms.as_str()],
    )
    .unwrap();
    let mut sims = Vec::new();
    for n in ["dp-busy", "dp-some", "dp-idle"] {
        let mut sim = SimDataPlane::connect(&cp.url(), DATA_PLANE_TOKEN, n, SimState::default())
            .await
            .unwrap();
        sim.wait_for(1, WAIT).await.unwrap();
        sims.push(sim);
    }
    for sim in &mut sims {
        sim.wait_for_leases(WAIT, |s| s.data_planes == 3)
            .await
            .unwrap();
    }
    // Nobody holds an explicit lease yet: each applies floor(60 / 3).
    let started = Instant::now();
    let start: Vec<u64> = sims.iter().map(|s| share(&s.state())).collect();
    assert_eq!(start, vec![20, 20, 20]);

    let deadline = Instant::now() + WAIT;
    loop {
        demand(&sims[0], u64::MAX, 30).await;
        demand(&sims[1], 5, 0).await;
        demand(&sims[2], 0, 0).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let shares: Vec<u64> = sims.iter().map(|s| share(&s.state())).collect();
        if shares[0] >= 45 && shares.iter().sum::<u64>() == LIMIT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the busy data plane did not get most of the limit: {shares:?}"
        );
    }
    let states: Vec<SimState> = sims.iter().map(SimDataPlane::state).collect();
    let refs: Vec<&SimState> = states.iter().collect();
    let sums = sums_since(&refs, started, &start);
    assert!(!sums.is_empty());
    assert!(
        sums.iter().all(|s| *s <= LIMIT),
        "applied shares passed {LIMIT}: {sums:?}"
    );
    let shares: Vec<u64> = states.iter().map(share).collect();
    assert!(
        shares[0] > shares[1] && shares[1] > shares[2],
        "shares do not follow demand: {shares:?}"
    );
    assert!(states.iter().all(|s| s.data_planes == 3));
    assert!(cp.metric("sluice_limits_managed").await.unwrap() >= 1.0);
    assert!(cp.metric("sluice_limit_leases_sent_total").await.unwrap() >= 3.0);
    assert_eq!(cp.metric("sluice_limit_data_planes").await.unwrap(), 3.0);

    // The idle one leaves: its share stays counted for the grace period.
    let idle = sims.pop().unwrap();
    let left = Instant::now();
    let before: Vec<u64> = sims.iter().map(|s| share(&s.state())).collect();
    let idle_share = share(&idle.state());
    let _ = idle.close().await;
    let mut freed = None;
    let deadline = left + GRACE + WAIT;
    while freed.is_none() {
        demand(&sims[0], u64::MAX, 30).await;
        demand(&sims[1], 5, 0).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let states: Vec<SimState> = sims.iter().map(SimDataPlane::state).collect();
        let sum: u64 = states.iter().map(share).sum();
        // A little margin for the close to reach the control plane.
        if left.elapsed() + Duration::from_millis(500) < GRACE {
            assert!(
                sum <= LIMIT - idle_share,
                "the departed share was given away within its grace period: {sum}"
            );
        }
        if sum == LIMIT && states.iter().all(|s| s.data_planes == 2) {
            freed = Some(left.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "the departed share was not freed: sum {sum}, data_planes {:?}",
            states.iter().map(|s| s.data_planes).collect::<Vec<_>>()
        );
    }
    let freed = freed.unwrap_or_default();
    assert!(
        freed >= GRACE,
        "freed after {freed:?}, before the grace period"
    );
    let states: Vec<SimState> = sims.iter().map(SimDataPlane::state).collect();
    let refs: Vec<&SimState> = states.iter().collect();
    let sums = sums_since(&refs, left, &before);
    assert!(
        sums.iter().all(|s| *s <= LIMIT),
        "applied shares passed {LIMIT} after a departure: {sums:?}"
    );
    assert!(share(&states[0]) > share(&states[1]));
}
