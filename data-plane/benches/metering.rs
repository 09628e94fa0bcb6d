//! What admission against budgets and rate limits costs a request, against
//! a baseline measured in the same run: the same request with none set (what
//! every request pays: the lookups that find nothing to count).
//!
//! `cargo bench -p sluice-data-plane --bench metering` (release build).
//! `SLUICE_BENCH_ROUNDS` changes the requests per thread and case.
//!
//! Each request is what the request path does (`http/openai.rs`):
//! [`Limiter::admit`] against the key's `rpm_limit` and `tpm_limit`,
//! [`Ledger::admit`] against its `max_budget` (1 d window), then, when the
//! answer ends, the tokens and the reservation settled. Run on one thread and
//! on two threads hammering the same key (the proxy bench's (f): both
//! workers on one key, the worst case for shared counters).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sluice_data_plane::usage::ledger::{Budget, Ledger, Scope};
use sluice_data_plane::usage::limits::{Kind, Limit, Limiter};

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One request; `limited`: the key has a budget and limits.
fn request(ledger: &Ledger, limiter: &Limiter, limited: bool) {
    let limits = [
        Limit {
            scope: Scope::Key,
            id: "key-f",
            kind: Kind::Rpm,
            limit: u64::MAX / 4,
        },
        Limit {
            scope: Scope::Key,
            id: "key-f",
            kind: Kind::Tpm,
            limit: u64::MAX / 4,
        },
    ];
    let budgets = [Budget {
        scope: Scope::Key,
        id: "key-f",
        max_budget: Some(i64::MAX / 4),
        budget_duration: "1d",
    }];
    let n = if limited { 2 } else { 0 };
    let now = now_s();
    let mut held = if n == 0 {
        Default::default()
    } else {
        limiter.admit(&limits[..n], 11, now).expect("admitted")
    };
    let reservation = if limited {
        ledger
            .admit(&budgets, None, 1_000, 1, now)
            .expect("admitted")
    } else {
        Default::default()
    };
    black_box(&held.standing);
    held.settle(18);
    reservation.settle(25, 0);
}

/// ns per request over `rounds` requests on each of `threads` threads.
fn measure(threads: usize, rounds: u32, limited: bool) -> f64 {
    let ledger = Arc::new(Ledger::default());
    let limiter = Arc::new(Limiter::default());
    // Warm: the states exist.
    request(&ledger, &limiter, limited);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (ledger, limiter) = (Arc::clone(&ledger), Arc::clone(&limiter));
            s.spawn(move || {
                for _ in 0..rounds {
                    request(&ledger, &limiter, limited);
                }
            });
        }
    });
    // Per request as one thread sees it: wall time over its own requests.
    started.elapsed().as_nanos() as f64 / f64::from(rounds)
}

fn main() {
    let rounds: u32 = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("metering: {rounds} requests per thread and case, best of 5, ns per request");
    println!(
        "{:<10} {:>14} {:>22} {:>10}",
        "threads", "none set", "budget + rpm + tpm", "added"
    );
    for threads in [1, 2] {
        let best = |limited| {
            (0..5)
                .map(|_| measure(threads, rounds, limited))
                .fold(f64::INFINITY, f64::min)
        };
        let (base, limited) = (best(false), best(true));
        println!(
            "{threads:<10} {base:>14.0} {limited:>22.0} {:>10.0}",
            limited - base
        );
    }
}
