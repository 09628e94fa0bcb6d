//! The workload profile-guided release builds are trained on
//! (`scripts/build-release.sh`) still matches the API: every kind of request
//! in it gets the answer it expects from the data plane, which then exits
//! cleanly on SIGTERM (an instrumented build writes its profile as it exits).

use sluice_tests::control_plane::binary;
use sluice_tests::training::{ROUND, train};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_training_workload_is_answered_as_it_expects() {
    let rounds = 18;
    let program = binary("sluice-data-plane").expect("built");
    let tally = train(&program, rounds).await.expect("training runs");
    for (call, per_round) in ROUND {
        assert_eq!(
            tally.0.get(&call).copied(),
            Some(per_round * rounds),
            "{call:?} in {tally}"
        );
    }
}
