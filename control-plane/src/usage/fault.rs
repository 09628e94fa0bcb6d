//! A fault-injection point for the one crash the usage protocol must
//! survive without a test controlling time: a control plane that dies
//! after committing a report and before acknowledging it. With
//! `SLUICE_FAULT_EXIT_AFTER_USAGE_COMMIT=N` in its environment, the
//! process aborts right after its N-th committed report, before the ack is
//! sent; the data plane then resends the batch to the next control plane,
//! which must count it once. Tests set it; nothing else should.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms the fault.
pub const EXIT_AFTER_USAGE_COMMIT: &str = "SLUICE_FAULT_EXIT_AFTER_USAGE_COMMIT";

static ARMED: OnceLock<Option<u64>> = OnceLock::new();
static COMMITTED: AtomicU64 = AtomicU64::new(0);

/// Called after a report's transaction committed and before its ack goes
/// out: aborts the process at the armed count.
pub fn after_commit(node_id: &str, journal_id: &str, from: u64, to: u64) {
    let armed = ARMED.get_or_init(|| {
        std::env::var(EXIT_AFTER_USAGE_COMMIT)
            .ok()
            .and_then(|v| v.parse().ok())
    });
    let Some(at) = *armed else {
        return;
    };
    if COMMITTED.fetch_add(1, Ordering::SeqCst) + 1 == at {
        // Straight to stderr: the log writer would not be flushed by abort.
        eprintln!(
            "fault injection ({EXIT_AFTER_USAGE_COMMIT}={at}): aborting after committing \
             usage report {node_id} {journal_id} ({from}, {to}], before its ack"
        );
        std::process::abort();
    }
}
