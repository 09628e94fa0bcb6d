//! Budget windows and UTC days: pure arithmetic on unix seconds, shared in
//! rule (not in code) with the data plane, which must reset its own view of
//! a budget at the same instants.

use sluice_proto::budget::parse_window;

/// A budget window.
///
/// **The rule** (DESIGN §7; the data plane applies the same one):
///
/// - A scope's window length `d` comes from its `budget_duration` *as
///   configured now*: a number and a unit, `s`, `m`, `h` or `d` (seconds,
///   minutes, hours, days of 86,400 s; so `30s`, `15m`, `1h`, `1d`, `30d`),
///   the number ≥ 1 without a leading zero, at most 3650 days in all
///   (`sluice_proto::budget::parse_window`, what the admin API accepts).
/// - Windows are aligned to the unix epoch, in UTC, with no calendar: the
///   window holding the instant `t` (unix seconds) is
///   `[t - t mod d, t - t mod d + d)`, `mod` being the Euclidean remainder
///   (never negative). So `1d` windows start at 00:00:00 UTC, `1h` windows on
///   the hour, and `30d` windows every 2,592,000 s from 1970-01-01, not on
///   the 1st of a month.
/// - No `budget_duration` (empty), or one that does not parse (only a value
///   written around the admin API can), means no reset: a single window, the
///   lifetime, with start 0 and no end.
///
/// How the control plane counts an entry made at `at_s` into a scope's
/// totals, whose current window is `(start, duration)`:
/// - `duration` differs from the configured one: the window starts afresh,
///   as the window holding `at_s` under the configured duration;
/// - else `at_s` falls in a later window than `start`'s: the window moves
///   there, its counters from zero;
/// - then an entry in the current window adds to it, and one from an earlier
///   window (reported late) only to the lifetime and day counters.
///
/// A window is over, and its spend counts as zero for admission, once
/// `now >= start + d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Unix seconds; 0 for the lifetime.
    pub start_s: i64,
    /// `None` for the lifetime.
    pub length_s: Option<i64>,
}

impl Window {
    pub const LIFETIME: Window = Window {
        start_s: 0,
        length_s: None,
    };

    /// Whether `at_s` falls in this window.
    pub fn contains(&self, at_s: i64) -> bool {
        match self.length_s {
            None => true,
            Some(d) => at_s >= self.start_s && at_s - self.start_s < d,
        }
    }
}

/// The length in seconds of a budget window, `None` for no reset (see
/// [`Window`] for what is accepted).
pub fn length_of(budget_duration: &str) -> Option<i64> {
    parse_window(budget_duration).and_then(|s| i64::try_from(s).ok())
}

/// The window of `budget_duration` that holds the instant `at_s` (see
/// [`Window`] for the rule).
pub fn window_of(budget_duration: &str, at_s: i64) -> Window {
    match length_of(budget_duration) {
        None => Window::LIFETIME,
        Some(d) => Window {
            start_s: sluice_proto::budget::window_start(d.unsigned_abs(), at_s),
            length_s: Some(d),
        },
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// The UTC day holding `at_s`, as `YYYY-MM-DD`.
pub fn day_of(at_s: i64) -> String {
    let (y, m, d) = civil_from_days(at_s.div_euclid(SECONDS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` day (years 0000 to 9999), or
/// `None` when it is not one.
pub fn parse_day(day: &str) -> Option<i64> {
    let b = day.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = day.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// The day `days` after 1970-01-01, as `YYYY-MM-DD`.
pub fn day_from_days(days: i64) -> String {
    day_of(days.saturating_mul(SECONDS_PER_DAY))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil` and `civil_from_days` (proleptic
// Gregorian calendar), exact for every i64 day this code meets.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-02T05:19:57Z
    const T: i64 = 1_796_188_797;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let w = window_of("1d", T);
        assert_eq!(w.start_s, T - T % 86_400);
        assert_eq!(w.length_s, Some(86_400));
        assert_eq!(day_of(w.start_s), day_of(T));
        assert_eq!(window_of("1h", T).start_s % 3600, 0);
        assert_eq!(window_of("30s", 59).start_s, 30);
        assert_eq!(window_of("30s", 60).start_s, 60);
        assert_eq!(window_of("30d", T).start_s % (30 * 86_400), 0);
        // The last second of a window is in it, the next one is not.
        let w = window_of("1h", 7200);
        assert!(w.contains(7200) && w.contains(10_799) && !w.contains(10_800));
        assert!(!w.contains(7199));
        // Before the epoch the remainder stays positive.
        assert_eq!(window_of("1h", -1).start_s, -3600);
    }

    #[test]
    fn no_duration_or_a_bad_one_is_the_lifetime() {
        for d in ["", "1w", "0d", "abc"] {
            assert_eq!(window_of(d, T), Window::LIFETIME, "{d:?}");
            assert!(Window::LIFETIME.contains(T));
        }
        assert_eq!(window_of("15m", T).length_s, Some(900));
    }

    #[test]
    fn days_are_utc_and_round_trip() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_399), "1970-01-01");
        assert_eq!(day_of(86_400), "1970-01-02");
        assert_eq!(day_of(-1), "1969-12-31");
        assert_eq!(day_of(951_782_400), "2000-02-29");
        assert_eq!(day_of(T), "2026-12-02");
        for day in [
            "1970-01-01",
            "2000-02-29",
            "2024-12-31",
            "2026-03-01",
            "9999-12-31",
        ] {
            let n = parse_day(day).unwrap();
            assert_eq!(day_from_days(n), day);
        }
        assert_eq!(parse_day("2026-12-02"), Some(T / 86_400));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "2026/01/01",
            "",
            "２０２６-01-01",
            "2026-01-32",
            "+026-01-01",
        ] {
            assert_eq!(parse_day(bad), None, "{bad:?}");
        }
    }
}
