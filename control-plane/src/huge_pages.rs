//! Buffers of a hundred megabytes backed by transparent huge pages.
//!
//! A full snapshot of a million keys is encoded into one fresh ~100 MB
//! buffer. Touching it 4 KiB page by page costs a page fault each (25,000 of
//! them), which on a virtual machine is most of the encode: measured at 70%
//! of the control plane's time while it encodes and sends one. Where the
//! kernel offers transparent huge pages on request (`madvise`, the usual
//! default), asking for them makes that 50 faults. Elsewhere this asks for
//! nothing and changes nothing.

/// Below this, glibc may serve a buffer from its heap, shared with other
/// allocations; above, it maps it on its own.
const FROM: usize = 32 << 20;

/// A 2 MiB huge page.
const HUGE_PAGE: usize = 2 << 20;

/// An empty buffer with room for `capacity` bytes, on huge pages when it is
/// large and the system offers them.
pub fn buffer(capacity: usize) -> Vec<u8> {
    let buf = Vec::with_capacity(capacity);
    if capacity >= FROM {
        advise(&buf);
    }
    buf
}

#[cfg(target_os = "linux")]
fn advise(buf: &Vec<u8>) {
    const MADV_HUGEPAGE: i32 = 14;
    unsafe extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    // The whole huge pages inside the allocation: madvise wants an aligned
    // start, and nothing outside it is ours to advise on.
    let start = (buf.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
    let end = (buf.as_ptr() as usize + buf.capacity()) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: [start, end) lies within `buf`'s allocation, which lives
        // until after this call; MADV_HUGEPAGE is advice about how to back
        // those pages and changes neither their contents nor their validity.
        let refused =
            unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE) } != 0;
        if refused {
            tracing::debug!("madvise(MADV_HUGEPAGE) refused; the buffer stays on small pages");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: &Vec<u8>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_buffer_is_usable_as_any() {
        let mut buf = buffer(FROM + 1);
        assert!(buf.capacity() > FROM);
        buf.resize(FROM + 1, 7);
        assert!(buf.iter().all(|&b| b == 7));
        let small = buffer(16);
        assert!(small.is_empty() && small.capacity() >= 16);
    }
}
