//! Memory allocator settings for a process that holds millions of small
//! allocations (one per key) and replaces them wholesale.
//!
//! glibc's malloc parks small freed chunks in "fastbins" and coalesces them
//! only when a later allocation is large. After a big config is dropped
//! (a full snapshot replacing the one held), that later allocation is the
//! next delta's, and it stalls for as long as it takes to walk every freed
//! chunk: measured at about a second for a million keys (`benches/apply.rs`),
//! against a one-key delta's tens of microseconds. Without fastbins, chunks
//! are coalesced as they are freed, a cost spread over the drop itself.

/// Applies the settings above; call once, early in `main`. Does nothing
/// where the allocator is not glibc's.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_MXFAST: i32 = 1;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: `mallopt` is glibc's documented, thread-safe tuning call;
        // M_MXFAST = 0 only disables fastbins, for every arena.
        let ok = unsafe { mallopt(M_MXFAST, 0) };
        if ok != 1 {
            tracing::debug!("mallopt(M_MXFAST, 0) was refused; fastbins stay on");
        }
    }
}
