//! Budget windows (DESIGN §7): the one rule both planes use, so that a data
//! plane resets its view of a budget at the instants the control plane
//! counts it in.
//!
//! A `budget_duration` is a number and a unit `s`, `m`, `h` or `d` (`30s`,
//! `15m`, `1h`, `1d`, `30d`), at most 3650 days, no leading zero. Windows are
//! aligned to the unix epoch, not to a first request: the window holding
//! unix second `t` for a duration of `d` seconds starts at `t − t mod d`
//! (Euclidean) and ends `d` seconds later; so `1d` windows start at 00:00
//! UTC. No duration means one window that never resets, starting at 0.

/// Seconds in a budget window; `None` for text that is no duration.
pub fn parse_window(value: &str) -> Option<u64> {
    let unit = value.chars().last()?;
    let number = &value[..value.len() - unit.len_utf8()];
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

/// The start of the window of `duration_s` seconds holding `at_s` (0 for a
/// window that never resets).
pub fn window_start(duration_s: u64, at_s: i64) -> i64 {
    match i64::try_from(duration_s) {
        Ok(d) if d > 0 => at_s - at_s.rem_euclid(d),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_windows() {
        assert_eq!(parse_window("30s"), Some(30));
        assert_eq!(parse_window("15m"), Some(900));
        assert_eq!(parse_window("1h"), Some(3600));
        assert_eq!(parse_window("30d"), Some(30 * 86_400));
        for bad in [
            "", "d", "0s", "01h", "1w", "-1d", "1.5h", "3651d", "1 d", "é",
        ] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
        let t = 1_796_189_410;
        assert_eq!(window_start(30, t), t - 10);
        assert_eq!(window_start(86_400, t) % 86_400, 0);
        assert_eq!(window_start(0, t), 0);
        assert_eq!(window_start(30, -5), -30);
    }
}
