//! Trains a profile-guided build of the data plane: runs the instrumented
//! build given as its argument through [`sluice_tests::training`]'s
//! workload, which it records as it exits. `scripts/build-release.sh` runs
//! it; see there.
//!
//! Usage: `sluice-pgo-train <sluice-data-plane executable> [rounds]`

use std::path::PathBuf;

use anyhow::Context;

/// Rounds by default: ~60,000 requests, about half a minute here.
const ROUNDS: usize = 2_500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let program: PathBuf = args
        .next()
        .context("usage: sluice-pgo-train <sluice-data-plane executable> [rounds]")?
        .into();
    let rounds = match args.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("rounds: {n:?} is not a number"))?,
        None => ROUNDS,
    };
    let tally = sluice_tests::training::train(&program, rounds)
        .await
        .with_context(|| format!("training {}", program.display()))?;
    println!("{tally}");
    Ok(())
}
