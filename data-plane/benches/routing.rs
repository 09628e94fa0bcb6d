//! The cost of one routing decision, per strategy, with 2 and 50
//! deployments in the group, against a baseline measured in the same run:
//! one uniform random index (what any pick must at least do).
//!
//! `cargo bench -p sluice-data-plane --bench routing` (release build).
//! `SLUICE_BENCH_DECISIONS` changes the number of decisions timed per case.
//!
//! Each decision is [`pick`] over live [`DeploymentState`]s (atomics, as on
//! the request path), with some deployments carrying latency samples, usage
//! and in-flight counts so that no strategy takes a shortcut; the last one
//! of each group is cooling, so availability is decided every time.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use sluice_data_plane::router::pick::{Ask, Tried, pick};
use sluice_data_plane::router::policy::{Policy, Strategy};
use sluice_data_plane::router::state::{DeploymentState, now_ms};
use sluice_proto::admin::v1::Deployment;

fn group(n: usize, now: u64) -> (Vec<Deployment>, Vec<Arc<DeploymentState>>) {
    let deployments: Vec<Deployment> = (0..n)
        .map(|i| Deployment {
            id: format!("d{i}"),
            weight: 1 + (i as u32 % 3),
            tpm: 100_000,
            input_cost_per_token: 1e-6 * (1 + i % 4) as f64,
            output_cost_per_token: 2e-6,
            ..Default::default()
        })
        .collect();
    let states: Vec<Arc<DeploymentState>> = deployments
        .iter()
        .map(|d| Arc::new(DeploymentState::new(&d.id)))
        .collect();
    for (i, s) in states.iter().enumerate() {
        s.record_latency(Duration::from_millis(20 + i as u64 % 7));
        s.add_tokens(now, 100 * i as u64);
    }
    states[n - 1].fleet_cooldown(now + 3_600_000);
    (deployments, states)
}

fn main() {
    let decisions: u32 = std::env::var("SLUICE_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let now = now_ms();
    let mut rng = SmallRng::seed_from_u64(7);
    let tried = Tried::default();
    let ask = Ask {
        prompt_tokens: 100,
        now,
    };

    // Baseline: one random index into the group.
    let baseline = |n: usize, rng: &mut SmallRng| {
        let started = Instant::now();
        for _ in 0..decisions {
            black_box(rand::Rng::random_range(rng, 0..n));
        }
        started.elapsed().as_nanos() as f64 / f64::from(decisions)
    };

    println!("routing decisions: {decisions} per case, ns per decision (ratio to the baseline)");
    println!(
        "{:<24} {:>16} {:>16}",
        "strategy", "2 deployments", "50 deployments"
    );
    let base = [baseline(2, &mut rng), baseline(50, &mut rng)];
    println!(
        "{:<24} {:>16.1} {:>16.1}",
        "baseline (random index)", base[0], base[1]
    );
    for strategy in [
        Strategy::SimpleShuffle,
        Strategy::LeastBusy,
        Strategy::LatencyBased,
        Strategy::UsageBased,
        Strategy::CostBased,
    ] {
        let policy = Policy::default().with_strategy(strategy);
        let mut row = Vec::new();
        for n in [2, 50] {
            let (deployments, states) = group(n, now);
            let _busy = states[0].start(now, 0);
            let started = Instant::now();
            for _ in 0..decisions {
                black_box(
                    pick(&deployments, &states, &policy, ask, &tried, &mut rng).expect("one"),
                );
            }
            row.push(started.elapsed().as_nanos() as f64 / f64::from(decisions));
        }
        println!(
            "{:<24} {:>9.1} ({:>4.1}x) {:>9.1} ({:>4.1}x)",
            strategy.as_str(),
            row[0],
            row[0] / base[0].max(0.1),
            row[1],
            row[1] / base[1].max(0.1)
        );
    }
}
