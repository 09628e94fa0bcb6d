//! Rate limits across data planes (DESIGN §7): `rpm_limit` and `tpm_limit`
//! of keys and teams, `max_parallel_requests` of keys, each enforced here
//! against this data plane's share of it, on atomics.
//!
//! A share is what the control plane leased this data plane
//! ([`Limiter::leased`]); until it has leased one, a limit is shared evenly,
//! `floor(limit / data planes)`, so a data plane never starts out holding the
//! whole limit. RPM and TPM count per minute, in windows aligned to the
//! minute (`t − t mod 60` of this data plane's clock). A request is admitted
//! while what this minute's count would become stays within the share (RPM),
//! while the tokens counted this minute are below the share (TPM: the
//! request's prompt estimate is counted at once and corrected to its real
//! tokens when it ends), and while the requests in flight stay within the
//! share (parallel).
//!
//! About once a second [`Limiter::demands`] says, for every limit in use,
//! what was used, what share is applied and what was refused for want of
//! share: the control plane moves shares to where they are wanted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use sluice_proto::config::v1::{Demand, LimitKind, LimitLeases};
use smallvec::SmallVec;

use super::ledger::Scope;
use super::sharded::Sharded;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Rpm,
    Tpm,
    Parallel,
}

impl Kind {
    fn wire(self) -> LimitKind {
        match self {
            Kind::Rpm => LimitKind::Rpm,
            Kind::Tpm => LimitKind::Tpm,
            Kind::Parallel => LimitKind::Parallel,
        }
    }

    fn from_wire(kind: i32) -> Option<Kind> {
        match LimitKind::try_from(kind).ok()? {
            LimitKind::Rpm => Some(Kind::Rpm),
            LimitKind::Tpm => Some(Kind::Tpm),
            LimitKind::Parallel => Some(Kind::Parallel),
            LimitKind::Unspecified => None,
        }
    }

    /// For metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Rpm => "rpm",
            Kind::Tpm => "tpm",
            Kind::Parallel => "parallel",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Rpm => "requests per minute",
            Kind::Tpm => "tokens per minute",
            Kind::Parallel => "parallel requests",
        }
    }
}

/// One limit's state on this data plane.
#[derive(Debug, Default)]
pub struct LimitState {
    limit: AtomicU64,
    share: AtomicU64,
    leased: AtomicBool,
    /// The minute `used` counts (RPM, TPM).
    minute: AtomicI64,
    used: AtomicU64,
    refused: AtomicU64,
}

impl LimitState {
    fn roll(&self, now_s: i64) {
        let minute = now_s - now_s.rem_euclid(60);
        let held = self.minute.load(Ordering::Relaxed);
        if held < minute
            && self
                .minute
                .compare_exchange(held, minute, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
    }
}

/// A limit that applies to a request.
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    pub scope: Scope,
    pub id: &'a str,
    pub kind: Kind,
    pub limit: u64,
}

/// Why a request was refused, and what the `x-ratelimit-*` headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: Scope,
    pub id: String,
    pub kind: Kind,
    pub limit: u64,
    /// Seconds until the window resets (RPM, TPM); `None` for parallel.
    pub reset_s: Option<u64>,
}

/// The state of the request and token limits after an admission, for the
/// `x-ratelimit-*` headers: the tightest of each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    /// Left of this data plane's share.
    pub remaining: u64,
    pub reset_s: u64,
}

/// What an admitted request holds: its parallel slots, and its tokens
/// counted by estimate until it ends.
#[derive(Debug, Default)]
pub struct Held {
    /// Inline: a key has one parallel limit, a key and its team a TPM
    /// limit each.
    parallel: SmallVec<[Arc<LimitState>; 1]>,
    tokens: SmallVec<[(Arc<LimitState>, i64, u64); 2]>,
    pub standing: Standing,
}

impl Held {
    /// The request ended having used `tokens`: the estimate counted for
    /// TPM is corrected to them (in the same minute only).
    pub fn settle(&mut self, tokens: u64) {
        for (state, minute, estimate) in self.tokens.drain(..) {
            if state.minute.load(Ordering::Relaxed) != minute {
                continue;
            }
            if tokens >= estimate {
                state.used.fetch_add(tokens - estimate, Ordering::Relaxed);
            } else {
                let less = estimate - tokens;
                let _ = state
                    .used
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(less))
                    });
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for state in self.parallel.drain(..) {
            let _ = state
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
        }
    }
}

/// Every limit's state on this data plane.
#[derive(Debug)]
pub struct Limiter {
    /// By scope (keys, teams, organizations), then kind.
    limits: [[Sharded<Box<str>, LimitState>; 3]; 3],
    /// The fleet's data planes, as the control plane counts them; 0 until
    /// it has said (then this data plane assumes it is alone: with no
    /// control plane ever heard from, there is no fleet to share with).
    data_planes: AtomicU32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            limits: Default::default(),
            data_planes: AtomicU32::new(0),
        }
    }
}

impl Limiter {
    fn state(&self, scope: Scope, id: &str, kind: Kind) -> Arc<LimitState> {
        self.limits[scope as usize][kind as usize].get_or_default(id)
    }

    /// Whether no limit has been used or leased here.
    pub fn is_empty(&self) -> bool {
        self.limits.iter().flatten().all(Sharded::is_empty)
    }

    /// The fleet's data planes as last told (at least 1).
    pub fn data_planes(&self) -> u32 {
        self.data_planes.load(Ordering::Relaxed).max(1)
    }

    /// The share applied to `state` for a limit of `limit`.
    fn share(&self, state: &LimitState, limit: u64) -> u64 {
        if state.leased.load(Ordering::Relaxed) {
            return state.share.load(Ordering::Relaxed).min(limit);
        }
        let n = u64::from(self.data_planes.load(Ordering::Relaxed).max(1));
        limit / n
    }

    /// Admits a request against every limit in `limits`, counting it; or
    /// refuses it naming the first limit it would pass (and counts nothing).
    /// `prompt_tokens` is the estimate TPM counts until the request ends.
    pub fn admit(
        &self,
        limits: &[Limit<'_>],
        prompt_tokens: u64,
        now_s: i64,
    ) -> Result<Held, Exceeded> {
        let mut held = Held::default();
        // Undone if a later limit refuses.
        let mut counted: SmallVec<[Arc<LimitState>; 2]> = SmallVec::new();
        let reset_s = (60 - now_s.rem_euclid(60)) as u64;
        for l in limits {
            let state = self.state(l.scope, l.id, l.kind);
            // Written only when it changes: a store to a line every worker
            // reads would bounce it between cores on every request.
            if state.limit.load(Ordering::Relaxed) != l.limit {
                state.limit.store(l.limit, Ordering::Relaxed);
            }
            let share = self.share(&state, l.limit);
            let exceeded = || Exceeded {
                scope: l.scope,
                id: l.id.to_owned(),
                kind: l.kind,
                limit: l.limit,
                reset_s: (l.kind != Kind::Parallel).then_some(reset_s),
            };
            match l.kind {
                Kind::Rpm | Kind::Parallel => {
                    if l.kind == Kind::Rpm {
                        state.roll(now_s);
                    }
                    let before = state.used.fetch_add(1, Ordering::AcqRel);
                    if before >= share {
                        state.used.fetch_sub(1, Ordering::AcqRel);
                        state.refused.fetch_add(1, Ordering::Relaxed);
                        undo(&counted, &held);
                        return Err(exceeded());
                    }
                    if l.kind == Kind::Rpm {
                        tightest(
                            &mut held.standing.requests,
                            Window {
                                limit: l.limit,
                                remaining: share - before - 1,
                                reset_s,
                            },
                        );
                        counted.push(state);
                    } else {
                        held.parallel.push(state);
                    }
                }
                Kind::Tpm => {
                    state.roll(now_s);
                    let used = state.used.load(Ordering::Acquire);
                    if used >= share {
                        state
                            .refused
                            .fetch_add(prompt_tokens.max(1), Ordering::Relaxed);
                        undo(&counted, &held);
                        return Err(exceeded());
                    }
                    state.used.fetch_add(prompt_tokens, Ordering::AcqRel);
                    tightest(
                        &mut held.standing.tokens,
                        Window {
                            limit: l.limit,
                            remaining: share.saturating_sub(used + prompt_tokens),
                            reset_s,
                        },
                    );
                    let minute = state.minute.load(Ordering::Relaxed);
                    held.tokens.push((state, minute, prompt_tokens));
                }
            }
        }
        Ok(held)
    }

    /// The control plane's shares (and its count of data planes).
    pub fn leased(&self, leases: &LimitLeases) {
        if leases.data_planes > 0 {
            self.data_planes
                .store(leases.data_planes, Ordering::Relaxed);
        }
        for lease in &leases.leases {
            let (Some(scope), Some(kind)) =
                (Scope::from_wire(lease.scope), Kind::from_wire(lease.kind))
            else {
                continue;
            };
            let state = self.state(scope, &lease.id, kind);
            state.share.store(lease.share, Ordering::Relaxed);
            state.leased.store(true, Ordering::Relaxed);
        }
    }

    /// What to tell the control plane: every limit in use or leased, with
    /// what was refused since the last call (which this resets).
    pub fn demands(&self, now_s: i64) -> Vec<Demand> {
        let mut out = Vec::new();
        for (scope, kinds) in [Scope::Key, Scope::Team, Scope::Organization]
            .into_iter()
            .zip(&self.limits)
        {
            for (kind, map) in [Kind::Rpm, Kind::Tpm, Kind::Parallel]
                .into_iter()
                .zip(kinds)
            {
                self.demands_of(scope, kind, map, now_s, &mut out);
            }
        }
        out
    }

    fn demands_of(
        &self,
        scope: Scope,
        kind: Kind,
        map: &Sharded<Box<str>, LimitState>,
        now_s: i64,
        out: &mut Vec<Demand>,
    ) {
        map.for_each(|id, state| {
            if kind != Kind::Parallel {
                state.roll(now_s);
            }
            let used = state.used.load(Ordering::Relaxed);
            let refused = state.refused.swap(0, Ordering::Relaxed);
            let leased = state.leased.load(Ordering::Relaxed);
            if used == 0 && refused == 0 && !leased {
                return;
            }
            let limit = state.limit.load(Ordering::Relaxed);
            out.push(Demand {
                scope: scope.wire() as i32,
                id: id.to_string(),
                kind: kind.wire() as i32,
                limit,
                used,
                held: self.share(state, limit),
                refused,
            });
        });
    }
}

fn tightest(slot: &mut Option<Window>, w: Window) {
    if slot.is_none_or(|s| w.remaining < s.remaining) {
        *slot = Some(w);
    }
}

/// A refusal after some limits counted the request: give their counts back.
fn undo(counted: &[Arc<LimitState>], held: &Held) {
    for state in counted {
        state.used.fetch_sub(1, Ordering::AcqRel);
    }
    for (state, _, estimate) in &held.tokens {
        let _ = state
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(*estimate))
            });
    }
    // Parallel slots are given back when `held` is dropped.
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::config::v1::{Lease, UsageScope};

    const NOW: i64 = 1_796_189_410;

    fn rpm(limit: u64) -> Limit<'static> {
        Limit {
            scope: Scope::Key,
            id: "k",
            kind: Kind::Rpm,
            limit,
        }
    }

    #[test]
    fn alone_a_data_plane_admits_the_limit_per_minute() {
        let limiter = Limiter::default();
        let admitted = (0..100)
            .filter(|_| limiter.admit(&[rpm(60)], 0, NOW).is_ok())
            .count();
        assert_eq!(admitted, 60);
        let refused = limiter.admit(&[rpm(60)], 0, NOW).unwrap_err();
        assert_eq!(refused.reset_s, Some(50));
        // The next minute starts afresh.
        assert!(limiter.admit(&[rpm(60)], 0, NOW + 50).is_ok());
    }

    #[test]
    fn in_a_fleet_it_starts_with_an_even_share_and_then_keeps_its_lease() {
        let limiter = Limiter::default();
        limiter.leased(&LimitLeases {
            data_planes: 3,
            leases: vec![],
        });
        let admitted = (0..100)
            .filter(|_| limiter.admit(&[rpm(60)], 0, NOW).is_ok())
            .count();
        assert_eq!(admitted, 20);
        let demands = limiter.demands(NOW);
        assert_eq!(demands.len(), 1);
        assert_eq!(
            (demands[0].used, demands[0].held, demands[0].refused),
            (20, 20, 80)
        );
        // The control plane gives it more.
        limiter.leased(&LimitLeases {
            data_planes: 3,
            leases: vec![Lease {
                scope: UsageScope::Key as i32,
                id: "k".into(),
                kind: LimitKind::Rpm as i32,
                share: 45,
            }],
        });
        let more = (0..100)
            .filter(|_| limiter.admit(&[rpm(60)], 0, NOW).is_ok())
            .count();
        assert_eq!(more, 25);
        // A lease above the limit is held to the limit.
        assert_eq!(limiter.demands(NOW)[0].refused, 75);
    }

    #[test]
    fn parallel_requests_are_held_until_they_end() {
        let limiter = Limiter::default();
        let two = Limit {
            kind: Kind::Parallel,
            ..rpm(2)
        };
        let a = limiter.admit(&[two], 0, NOW).unwrap();
        let b = limiter.admit(&[two], 0, NOW).unwrap();
        assert_eq!(limiter.admit(&[two], 0, NOW).unwrap_err().reset_s, None);
        drop(a);
        let c = limiter.admit(&[two], 0, NOW).unwrap();
        drop((b, c));
        assert_eq!(limiter.demands(NOW)[0].used, 0);
    }

    #[test]
    fn tokens_are_counted_by_estimate_then_corrected() {
        let limiter = Limiter::default();
        let tpm = Limit {
            kind: Kind::Tpm,
            ..rpm(1000)
        };
        let mut first = limiter.admit(&[tpm], 100, NOW).unwrap();
        assert_eq!(first.standing.tokens.unwrap().remaining, 900);
        first.settle(950);
        // 950 used of 1,000: under the limit, admitted; then over it.
        let mut second = limiter.admit(&[tpm], 10, NOW).unwrap();
        second.settle(60);
        assert!(limiter.admit(&[tpm], 10, NOW).is_err());
    }

    #[test]
    fn a_refusal_by_one_limit_counts_nothing_against_the_others() {
        let limiter = Limiter::default();
        let team = Limit {
            scope: Scope::Team,
            id: "t",
            kind: Kind::Rpm,
            limit: 1,
        };
        limiter.admit(&[team], 0, NOW).unwrap();
        for _ in 0..5 {
            assert!(limiter.admit(&[rpm(10), team], 0, NOW).is_err());
        }
        let key_used = limiter
            .demands(NOW)
            .into_iter()
            .find(|d| d.scope == UsageScope::Key as i32)
            .map_or(0, |d| d.used);
        assert_eq!(key_used, 0);
    }
}
