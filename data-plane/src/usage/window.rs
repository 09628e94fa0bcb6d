//! Budget windows (DESIGN §7), the same rule as the control plane's.
//!
//! A `budget_duration` is a number and a unit `s`, `m`, `h` or `d` (`30s`,
//! `1h`, `1d`, `30d`), at most 3650 days. Windows are aligned to the unix
//! epoch, not to the first request: the window holding unix second `t` for
//! a duration of `d` seconds starts at `t - t mod d` and ends `d` seconds
//! later. So `1d` windows start at 00:00 UTC, `1h` windows on the hour, and
//! every data plane and control plane agree on a window without talking. An
//! empty duration means the budget never resets: one window, starting at 0.

/// Seconds in a budget window; `None` for text that is no duration.
pub fn parse(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0') {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds <= 3650 * 86_400).then_some(seconds)
}

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
pub fn start(duration_s: u64, now_s: i64) -> i64 {
    let Ok(d) = i64::try_from(duration_s) else {
        return 0;
    };
    if d == 0 || now_s <= 0 {
        return 0;
    }
    now_s - now_s % d
}

/// When the window holding `now_s` ends; `None` for a window that never does.
pub fn end(duration_s: u64, now_s: i64) -> Option<i64> {
    let d = i64::try_from(duration_s).ok().filter(|d| *d > 0)?;
    Some(start(duration_s, now_s) + d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("30s"), Some(30));
        assert_eq!(parse("1h"), Some(3600));
        assert_eq!(parse("1d"), Some(86_400));
        assert_eq!(parse("30d"), Some(30 * 86_400));
        assert_eq!(parse("15m"), Some(900));
        for bad in ["", "d", "0s", "01h", "1w", "-1d", "1.5h", "3651d", "1 d"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(seconds(""), 0);
    }

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
