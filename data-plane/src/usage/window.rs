//! Budget windows (DESIGN §7): [`sluice_proto::budget`]'s rule, which the
//! control plane counts by, so every data plane and control plane agree on
//! a window without talking.

/// Seconds in a budget window; `None` for text that is no duration.
pub use sluice_proto::budget::parse_window as parse;

/// A scope's window length: 0 for none (or for text that does not parse,
/// which the control plane never stores).
pub fn seconds(budget_duration: &str) -> u64 {
    if budget_duration.is_empty() {
        0
    } else {
        parse(budget_duration).unwrap_or(0)
    }
}

/// The start of the window holding `now_s`, for windows of `duration_s`
/// (0: the one window that never resets, starting at 0).
pub use sluice_proto::budget::window_start as start;

/// When the window holding `now_s` ends; `None` for a window that never does.
pub fn end(duration_s: u64, now_s: i64) -> Option<i64> {
    let d = i64::try_from(duration_s).ok().filter(|d| *d > 0)?;
    Some(start(duration_s, now_s) + d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        // 2026-12-02T05:30:10Z
        let t = 1_796_189_410;
        assert_eq!(start(30, t), t - 10);
        assert_eq!(end(30, t), Some(t + 20));
        assert_eq!(start(86_400, t) % 86_400, 0);
        assert_eq!(start(3600, t), t - 30 * 60 - 10);
        assert_eq!(start(0, t), 0);
        assert_eq!(end(0, t), None);
        // The last second of a window is still in it; the next starts anew.
        assert_eq!(start(30, t + 19), t - 10);
        assert_eq!(start(30, t + 20), t + 20);
    }
}
