//! One limit's shares among the data planes of one replica, as a pure
//! function (DESIGN §7), so the rule can be tested without sockets or time.
//!
//! The rule, for a capacity `C` (this replica's part of the limit) and a
//! default `d = floor(L / data_planes)`:
//!
//! 1. Each data plane is *counted* as holding `max(granted, held)` (either
//!    one missing counts as `d`): it may apply the last lease sent or the one
//!    it last said it applies, whichever is larger. A data plane whose
//!    `held` differs from what it was granted has a change in flight and is
//!    left as counted; so is one that is disconnected (it keeps applying its
//!    share). At most one change is in flight per data plane, which is what
//!    makes `max(granted, held)` an upper bound of what it may apply.
//! 2. The others share what is left, `C - Σ counted(fixed)`: each between
//!    its floor `used` (admitted this minute, or in flight: never taken
//!    back) and its want `used + refused + max(1, (used + refused) / 10)`,
//!    by max-min fair water-filling; what is still left after every want is
//!    met is spread evenly over them, so an idle data plane keeps a little.
//! 3. Lower first (Doorman's rule): a target below what a data plane is
//!    counted at is sent at once, but frees nothing until its `held` shows
//!    it; a target above is given only out of `C - Σ counted` now, the
//!    smallest needs first, the free part split evenly.
//!
//! So `Σ counted` never grows past `C` (and when `C` shrank below it, only
//! lowers are sent until it is back under). The one exception is rule 2's
//! floor: when the floors alone pass what is left, every share stays at its
//! `used`, which is already admitted and cannot be taken back.

/// One data plane's part in one limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    /// RPM/TPM: admitted in the current minute; PARALLEL: in flight.
    pub used: u64,
    /// Refused for want of share since the last demand.
    pub refused: u64,
    /// The share it last said it applies; `None` before its first demand.
    pub held: Option<u64>,
    /// The last lease this control plane sent it; `None` before the first.
    pub granted: Option<u64>,
    /// Connected to this replica (a disconnected one in its grace period is
    /// counted, never changed).
    pub connected: bool,
}

impl Holder {
    /// The most it may be applying now.
    pub fn counted(&self, default: u64) -> u64 {
        self.granted
            .unwrap_or(default)
            .max(self.held.unwrap_or(default))
    }

    /// A lease sent that its demands do not show applied yet.
    pub fn in_flight(&self) -> bool {
        self.granted.is_some() && self.held != self.granted
    }

    fn movable(&self) -> bool {
        self.connected && !self.in_flight()
    }

    fn want(&self) -> u64 {
        let wanted = self.used.saturating_add(self.refused);
        wanted.saturating_add((wanted / 10).max(1))
    }
}

/// The lease to send each holder (`None`: nothing to send), by index.
pub fn allocate(capacity: u64, default: u64, holders: &[Holder]) -> Vec<Option<u64>> {
    let counted: Vec<u64> = holders.iter().map(|h| h.counted(default)).collect();
    let movable: Vec<usize> = (0..holders.len())
        .filter(|&i| holders[i].movable())
        .collect();
    let fixed = movable_complement_sum(&counted, &movable);
    let bounds: Vec<(u64, u64)> = movable
        .iter()
        .map(|&i| {
            let h = &holders[i];
            (h.used, h.want().max(h.used))
        })
        .collect();
    let targets = fill(capacity.saturating_sub(fixed), &bounds);

    let mut out = vec![None; holders.len()];
    let mut raises = Vec::new();
    for (&i, &target) in movable.iter().zip(&targets) {
        let now = counted[i];
        if target > now {
            raises.push((i, target - now));
        } else if holders[i].granted != Some(target) {
            // Lowered (or first made explicit): sent now, freeing nothing
            // until `held` shows it.
            out[i] = Some(target);
        }
    }
    let total = counted.iter().fold(0u64, |s, c| s.saturating_add(*c));
    let mut free = capacity.saturating_sub(total);
    raises.sort_by_key(|&(i, need)| (need, i));
    let mut left = raises.len() as u64;
    for (i, need) in raises {
        let give = need.min(free / left);
        free -= give;
        left -= 1;
        let share = counted[i] + give;
        if holders[i].granted != Some(share) {
            out[i] = Some(share);
        }
    }
    out
}

fn movable_complement_sum(counted: &[u64], movable: &[usize]) -> u64 {
    let mut fixed = 0u64;
    let mut m = movable.iter().peekable();
    for (i, c) in counted.iter().enumerate() {
        if m.peek() == Some(&&i) {
            m.next();
        } else {
            fixed = fixed.saturating_add(*c);
        }
    }
    fixed
}

/// Max-min fair water-filling of `available` over `(floor, want)` bounds:
/// everyone gets `clamp(level, floor, want)` for the highest level that
/// fits, units left at that level go one each in order, and what is left
/// once every want is met is spread evenly. Floors are kept even when they
/// alone pass `available`.
pub fn fill(available: u64, bounds: &[(u64, u64)]) -> Vec<u64> {
    if bounds.is_empty() {
        return Vec::new();
    }
    let at = |level: u64| -> u64 {
        bounds.iter().fold(0u64, |s, &(lo, hi)| {
            s.saturating_add(level.clamp(lo, hi.max(lo)))
        })
    };
    let top = bounds.iter().map(|&(lo, hi)| hi.max(lo)).max().unwrap_or(0);
    let mut out: Vec<u64>;
    if at(top) <= available {
        out = bounds.iter().map(|&(lo, hi)| hi.max(lo)).collect();
        let spare = available - at(top);
        let n = bounds.len() as u64;
        for (k, share) in out.iter_mut().enumerate() {
            *share += spare / n + u64::from((k as u64) < spare % n);
        }
        return out;
    }
    // The highest level whose sum fits (at(0) is the floors' sum).
    let (mut lo, mut hi) = (0u64, top);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if at(mid) <= available {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let level = lo;
    out = bounds
        .iter()
        .map(|&(f, w)| level.clamp(f, w.max(f)))
        .collect();
    let mut spare = available.saturating_sub(at(level));
    for (share, &(f, w)) in out.iter_mut().zip(bounds) {
        if spare == 0 {
            break;
        }
        if *share == level && level >= f && level < w.max(f) {
            *share += 1;
            spare -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh(used: u64, refused: u64, share: u64) -> Holder {
        Holder {
            used,
            refused,
            held: Some(share),
            granted: Some(share),
            connected: true,
        }
    }

    fn apply(holders: &mut [Holder], out: &[Option<u64>]) {
        for (h, o) in holders.iter_mut().zip(out) {
            if let Some(s) = o {
                h.granted = Some(*s);
            }
        }
    }

    #[test]
    fn water_filling_meets_small_wants_and_gives_the_rest_to_the_busy() {
        assert_eq!(fill(60, &[(40, 77), (5, 6), (0, 1)]), vec![53, 6, 1]);
        // Every want met: the rest spread evenly, remainder in order.
        assert_eq!(fill(60, &[(0, 1), (0, 1), (0, 1)]), vec![20, 20, 20]);
        assert_eq!(fill(10, &[(0, 1), (0, 1), (0, 1)]), vec![4, 3, 3]);
        // Floors kept even past what is available.
        assert_eq!(fill(10, &[(8, 9), (7, 9)]), vec![8, 7]);
        // An uneven split at one level: the first gets the odd unit.
        assert_eq!(fill(7, &[(0, 10), (0, 10)]), vec![4, 3]);
    }

    #[test]
    fn a_lowered_share_is_not_given_away_before_held_shows_it() {
        // b is idle at 30, a is busy at 30: b is lowered at once, a waits.
        let mut holders = [fresh(30, 50, 30), fresh(0, 0, 30)];
        let out = allocate(60, 30, &holders);
        assert_eq!(out[1], Some(1));
        assert_eq!(
            out[0], None,
            "nothing is free until b applies its lower share"
        );
        apply(&mut holders, &out);
        // b's demand still says 30: a still waits.
        assert_eq!(allocate(60, 30, &holders)[0], None);
        // b applied it: a gets what it freed.
        holders[1].held = Some(1);
        let out = allocate(60, 30, &holders);
        assert_eq!(out[0], Some(59));
        assert_eq!(out[1], None);
    }

    #[test]
    fn data_planes_without_a_lease_count_as_the_default_and_are_made_explicit() {
        // Three data planes; only the first demanded. The others count as
        // 20 each until they are sent a lease, and are sent one.
        let holders = [
            Holder {
                used: 20,
                refused: 40,
                held: Some(20),
                granted: None,
                connected: true,
            },
            Holder {
                connected: true,
                ..Default::default()
            },
            Holder {
                connected: true,
                ..Default::default()
            },
        ];
        let out = allocate(60, 20, &holders);
        assert_eq!(out[1], Some(1));
        assert_eq!(out[2], Some(1));
        // Nothing is free while the idle ones may still apply 20 each.
        assert_eq!(out[0], Some(20));
    }

    #[test]
    fn a_disconnected_data_plane_keeps_its_share_counted() {
        let mut gone = fresh(0, 0, 30);
        gone.connected = false;
        let holders = [fresh(30, 100, 30), gone];
        assert_eq!(allocate(60, 30, &holders), vec![None, None]);
        // Once it is dropped, its share is free.
        assert_eq!(allocate(60, 30, &holders[..1]), vec![Some(60)]);
    }

    #[test]
    fn a_share_is_never_lowered_below_used() {
        // The limit shrank to 20 while both used 15 of the minute.
        let holders = [fresh(15, 0, 30), fresh(15, 0, 30)];
        assert_eq!(allocate(20, 10, &holders), vec![Some(15), Some(15)]);
    }

    #[derive(Clone, Debug)]
    struct Step {
        demands: Vec<(u64, u64)>,
        acked: Vec<bool>,
        connected: Vec<bool>,
    }

    fn step(n: usize) -> impl Strategy<Value = Step> {
        (
            prop::collection::vec((0u64..80, 0u64..80), n),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(prop::bool::weighted(0.9), n),
        )
            .prop_map(|(demands, acked, connected)| Step {
                demands,
                acked,
                connected,
            })
    }

    proptest! {
        /// A simulated fleet: each data plane applies its lease when its
        /// (random) acknowledgement comes, and uses at most what it applies.
        /// Whatever it may apply, summed, never passes the limit; no lease
        /// goes below `used`.
        #[test]
        fn shares_never_sum_past_the_limit(
            limit in 1u64..200,
            steps in (1usize..6).prop_flat_map(|n| prop::collection::vec(step(n), 1..40)),
        ) {
            let n = steps[0].demands.len();
            let default = limit / n as u64;
            let mut holders = vec![Holder { connected: true, ..Default::default() }; n];
            // What each data plane applies, and what it might apply next.
            let mut applied = vec![default; n];
            for s in &steps {
                for (i, h) in holders.iter_mut().enumerate() {
                    if s.acked[i] && let Some(g) = h.granted {
                        applied[i] = g;
                    }
                    let (used, refused) = s.demands[i];
                    h.used = used.min(applied[i]);
                    h.refused = refused;
                    h.held = Some(applied[i]);
                    h.connected = s.connected[i];
                }
                let out = allocate(limit, default, &holders);
                for (i, o) in out.iter().enumerate() {
                    if let Some(share) = o {
                        prop_assert!(holders[i].connected);
                        prop_assert!(*share >= holders[i].used, "lease {} below used {}", share, holders[i].used);
                    }
                }
                apply(&mut holders, &out);
                let exposure: u64 = holders
                    .iter()
                    .zip(&applied)
                    .map(|(h, a)| h.granted.unwrap_or(default).max(*a))
                    .sum();
                prop_assert!(exposure <= limit, "{} may be applied of {}", exposure, limit);
            }
        }

        /// With everyone settled, the busy data plane ends with the most.
        #[test]
        fn busy_ones_get_more(limit in 10u64..1000, busy in 0usize..3) {
            let mut holders = vec![fresh(0, 0, limit / 3); 3];
            for _ in 0..4 {
                holders[busy].used = holders[busy].held.unwrap_or(0);
                holders[busy].refused = limit;
                let out = allocate(limit, limit / 3, &holders);
                apply(&mut holders, &out);
                for h in &mut holders {
                    h.held = h.granted;
                }
            }
            let shares: Vec<u64> = holders.iter().map(|h| h.granted.unwrap_or(0)).collect();
            prop_assert!(shares.iter().sum::<u64>() <= limit);
            for (i, s) in shares.iter().enumerate() {
                if i != busy {
                    prop_assert!(shares[busy] > *s, "{:?}", shares);
                }
            }
        }
    }
}
