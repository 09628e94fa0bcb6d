//! Admission against budgets and credits (DESIGN §7), on atomics.
//!
//! Each scope with a budget (a key, team or organization with `max_budget`)
//! or with credits to count (a team calling a deployment that charges
//! `credits_per_call`) has a [`ScopeState`]: the spend of its current window
//! as the control plane last reported it (`reported`), this data plane's own
//! spend not yet in that figure (`local`: settled requests whose usage is
//! journaled but not yet counted by the control plane), and the open
//! reservations of requests in flight (`reserved`); and the same three for
//! the team's credits, which never reset.
//!
//! A request is admitted while `reported + local + reserved` is not above the
//! budget, then adds its worst case to `reserved` — one `fetch_add`, so of
//! two racing requests the second sees the first's reservation — and when it
//! ends swaps that for its real cost in `local`. Across a fleet of `n` data
//! planes, each may spend beyond what the control plane has counted only its
//! share of what is left: `local + reserved` and the request's own worst case
//! not above `(max_budget − reported) / n` — or, when nothing of its own is
//! uncounted, one request at a time on the budget's own rule, so a share
//! smaller than a request does not stop a budget that is not spent. A data
//! plane that hits its share is paced (429 with `Retry-After: 1`) until the
//! next totals raise `reported` and lower `local`. Where each data plane
//! judging alone would let `n` budgets through, together they pass the
//! budget by at most one request each, plus what the reservations'
//! estimates miss, plus what a data plane admits within its share while its
//! view of the counted spend is a report behind. When the control plane
//! counts a batch it answers with the new totals: `reported` is raised
//! first, then `local` lowered by the batch, so for that instant the batch
//! counts twice (a refusal too many, never one too few).
//!
//! Scope states live in a sharded map: a request takes a shard's read lock
//! (uncontended: one atomic) per scope it checks; a scope's first request
//! takes the write lock once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use sluice_proto::config::v1::{UsageScope, UsageTotal};
use smallvec::SmallVec;

use super::sharded::Sharded;
use super::window;

/// What a budget is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    Team,
    Organization,
}

impl Scope {
    pub fn noun(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
            Scope::Organization => "organization",
        }
    }

    /// The protocol's name of the scope.
    pub fn wire(self) -> UsageScope {
        match self {
            Scope::Key => UsageScope::Key,
            Scope::Team => UsageScope::Team,
            Scope::Organization => UsageScope::Organization,
        }
    }

    /// A scope of the protocol's that budgets and limits apply to.
    pub fn from_wire(scope: i32) -> Option<Scope> {
        match UsageScope::try_from(scope).ok()? {
            UsageScope::Key => Some(Scope::Key),
            UsageScope::Team => Some(Scope::Team),
            UsageScope::Organization => Some(Scope::Organization),
            UsageScope::ModelGroup | UsageScope::Unspecified => None,
        }
    }
}

/// One scope's spend and credits, as this data plane knows them.
#[derive(Debug, Default)]
pub struct ScopeState {
    /// The window `reported` and `local` are for (unix seconds), and its
    /// length (0: never resets).
    window_start: AtomicI64,
    duration_s: AtomicU64,
    /// Whether a budget from this data plane's config has set the window's
    /// length yet (else totals may: they come before the first request).
    configured: std::sync::atomic::AtomicBool,
    reported: AtomicI64,
    /// The store revision of `reported` (and `credits_reported`).
    revision: AtomicI64,
    local: AtomicI64,
    reserved: AtomicI64,
    credits_reported: AtomicI64,
    credits_local: AtomicI64,
    credits_reserved: AtomicI64,
}

impl ScopeState {
    /// Moves the state to the window holding `now_s` for `duration_s`, if it
    /// is on an older one: the old window's spend no longer counts.
    fn roll(&self, duration_s: u64, now_s: i64) {
        let start = window::start(duration_s, now_s);
        // Read before written: a write every request to a line every worker
        // reads would bounce it between cores.
        if self.duration_s.load(Ordering::Relaxed) != duration_s
            && self.duration_s.swap(duration_s, Ordering::Relaxed) != duration_s
        {
            // A new length: the window is the new one's, whatever was counted.
            self.window_start.store(start, Ordering::Relaxed);
            self.reported.store(0, Ordering::Relaxed);
            self.local.store(0, Ordering::Relaxed);
            return;
        }
        let held = self.window_start.load(Ordering::Relaxed);
        if held < start
            && self
                .window_start
                .compare_exchange(held, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.reported.store(0, Ordering::Relaxed);
            self.local.store(0, Ordering::Relaxed);
        }
    }

    /// The window's spend, reservations included.
    fn committed(&self) -> i64 {
        self.reported
            .load(Ordering::Relaxed)
            .saturating_add(self.local.load(Ordering::Relaxed))
    }

    fn credits_used(&self) -> i64 {
        self.credits_reported
            .load(Ordering::Relaxed)
            .saturating_add(self.credits_local.load(Ordering::Relaxed))
    }

    /// Spend so far in the current window (for status and tests).
    pub fn spend(&self) -> i64 {
        self.committed()
    }
}

/// Every scope's state on this data plane.
#[derive(Debug, Default)]
pub struct Ledger {
    /// By scope: keys, teams, organizations.
    scopes: [Sharded<Box<str>, ScopeState>; 3],
}

/// A budget that applies to a request: the scope, its `max_budget` and
/// `budget_duration`, and (for teams) the credits it was allocated.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    pub scope: Scope,
    pub id: &'a str,
    pub max_budget: Option<i64>,
    pub budget_duration: &'a str,
}

/// Why a request was refused: which budget, what it stands at, and when it
/// resets (unix seconds; `None` for credits or a budget that never resets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Budget {
        scope: Scope,
        id: String,
        spend: i64,
        max_budget: i64,
        resets_at: Option<i64>,
    },
    Credits {
        team_id: String,
        allocated: i64,
        used: i64,
        needed: i64,
    },
    /// Not spent, but this data plane has spent its share of what is left
    /// of the budget beyond what the control plane has counted: retry once
    /// the next totals arrive (about a second).
    Pacing {
        scope: Scope,
        id: String,
        share: i64,
    },
}

/// Credits a call needs from a team.
#[derive(Debug, Clone, Copy)]
pub struct CreditAsk<'a> {
    pub team_id: &'a str,
    pub allocated: i64,
    pub per_call: i64,
}

/// What an admitted request holds until it ends.
#[derive(Debug, Default)]
pub struct Reservation {
    /// Inline: a key, its team and its organization at most.
    budgets: SmallVec<[(Arc<ScopeState>, i64); 3]>,
    credits: Option<(Arc<ScopeState>, i64)>,
}

impl Reservation {
    /// The request ended having cost `spend` and `credits`: the
    /// reservations are swapped for them.
    pub fn settle(mut self, spend: i64, credits: i64) {
        for (state, reserved) in self.budgets.drain(..) {
            state.local.fetch_add(spend, Ordering::Relaxed);
            state.reserved.fetch_sub(reserved, Ordering::Relaxed);
        }
        if let Some((state, reserved)) = self.credits.take() {
            state.credits_local.fetch_add(credits, Ordering::Relaxed);
            state
                .credits_reserved
                .fetch_sub(reserved, Ordering::Relaxed);
        }
    }
}

impl Drop for Reservation {
    /// Not settled: the request cost nothing (it got no answer).
    fn drop(&mut self) {
        for (state, reserved) in self.budgets.drain(..) {
            state.reserved.fetch_sub(reserved, Ordering::Relaxed);
        }
        if let Some((state, reserved)) = self.credits.take() {
            state
                .credits_reserved
                .fetch_sub(reserved, Ordering::Relaxed);
        }
    }
}

impl Ledger {
    /// The state of a scope, made on first use.
    fn state(&self, scope: Scope, id: &str) -> Arc<ScopeState> {
        self.scopes[scope as usize].get_or_default(id)
    }

    /// The state of a scope, if this data plane tracks it.
    pub fn get(&self, scope: Scope, id: &str) -> Option<Arc<ScopeState>> {
        self.scopes[scope as usize].get(id)
    }

    /// Admits a request whose worst case is `spend` micro-USD and `credits`,
    /// against every budget in `budgets` and the team's credits; reserves
    /// them, or refuses naming the first budget it would pass.
    pub fn admit(
        &self,
        budgets: &[Budget<'_>],
        credits: Option<CreditAsk<'_>>,
        spend: i64,
        data_planes: u32,
        now_s: i64,
    ) -> Result<Reservation, Refusal> {
        let mut held = Reservation::default();
        for b in budgets {
            let Some(max) = b.max_budget else { continue };
            let duration = window::seconds(b.budget_duration);
            let state = self.state(b.scope, b.id);
            state.roll(duration, now_s);
            if !state.configured.load(Ordering::Relaxed) {
                state.configured.store(true, Ordering::Relaxed);
            }
            let before = state.reserved.fetch_add(spend, Ordering::Relaxed);
            // Held now, so that a refusal below gives it back (moved, not
            // cloned: each clone of a state every worker shares is a
            // contended atomic).
            held.budgets.push((state, spend));
            let state = &held.budgets[held.budgets.len() - 1].0;
            let standing = state.committed().saturating_add(before);
            if standing > max {
                return Err(Refusal::Budget {
                    scope: b.scope,
                    id: b.id.to_owned(),
                    spend: state.committed(),
                    max_budget: max,
                    resets_at: window::end(duration, now_s),
                });
            }
            if data_planes > 1 {
                let headroom = max.saturating_sub(state.reported.load(Ordering::Relaxed));
                let share = headroom / i64::from(data_planes);
                let unreported = state.local.load(Ordering::Relaxed).saturating_add(before);
                // Within the share with its own worst case; or, with nothing
                // of its own uncounted, one request on the budget's own rule
                // (so a share smaller than a request still lets requests
                // through, one data plane round trip at a time).
                let within = unreported.saturating_add(spend) <= share;
                if !within && unreported > 0 {
                    return Err(Refusal::Pacing {
                        scope: b.scope,
                        id: b.id.to_owned(),
                        share,
                    });
                }
            }
        }
        if let Some(ask) = credits.filter(|c| c.per_call > 0) {
            let state = self.state(Scope::Team, ask.team_id);
            let before = state
                .credits_reserved
                .fetch_add(ask.per_call, Ordering::Relaxed);
            held.credits = Some((Arc::clone(&state), ask.per_call));
            let used = state.credits_used();
            if ask.allocated - used.saturating_add(before) < ask.per_call {
                return Err(Refusal::Credits {
                    team_id: ask.team_id.to_owned(),
                    allocated: ask.allocated,
                    used,
                    needed: ask.per_call,
                });
            }
        }
        Ok(held)
    }

    /// Totals from the control plane; each kept only when newer than what
    /// is held. `confirmed` then lowers `local` by what they now include.
    pub fn reported(&self, totals: &[UsageTotal]) {
        for t in totals {
            let Some(scope) = Scope::from_wire(t.scope) else {
                continue;
            };
            // Kept even for a scope no request here has used yet: the
            // control plane sends a total when it changes, not again.
            let state = self.state(scope, &t.id);
            if state.revision.fetch_max(t.revision, Ordering::AcqRel) > t.revision {
                continue;
            }
            state
                .credits_reported
                .store(t.credits_used, Ordering::Relaxed);
            let duration = window::seconds(&t.budget_duration);
            if !state.configured.load(Ordering::Relaxed) {
                // No request has said the window's length yet: the control
                // plane's is the best there is, and the first request's
                // `roll` keeps it when its config agrees.
                state.duration_s.store(duration, Ordering::Relaxed);
            }
            if duration != state.duration_s.load(Ordering::Relaxed) {
                // Counted under another window length than this data plane's
                // config says: the control plane's config is newer or older;
                // wait for the totals that match.
                continue;
            }
            let held = state.window_start.load(Ordering::Relaxed);
            if t.window_start_s > held {
                state.roll(duration, t.window_start_s);
            }
            if t.window_start_s == state.window_start.load(Ordering::Relaxed) {
                state.reported.store(t.window_spend, Ordering::Relaxed);
            }
        }
    }

    /// Own usage the control plane has now counted (its totals were given to
    /// [`Ledger::reported`] first): no longer `local`. `at_s` says which
    /// window it was spent in.
    pub fn confirmed(&self, scope: Scope, id: &str, at_s: i64, spend: i64, credits: i64) {
        let Some(state) = self.get(scope, id) else {
            return;
        };
        let duration = state.duration_s.load(Ordering::Relaxed);
        if window::start(duration, at_s) == state.window_start.load(Ordering::Relaxed) && spend > 0
        {
            sub_floor_zero(&state.local, spend);
        }
        if credits > 0 {
            sub_floor_zero(&state.credits_local, credits);
        }
    }

    /// Own usage journaled before a restart and not yet counted: `local`
    /// again, as if just settled.
    pub fn replayed(&self, budgets: &[Budget<'_>], at_s: i64, spend: i64, credits: i64) {
        for b in budgets.iter().filter(|b| b.max_budget.is_some()) {
            let state = self.state(b.scope, b.id);
            let duration = window::seconds(b.budget_duration);
            state.roll(duration, at_s);
            state.configured.store(true, Ordering::Relaxed);
            if window::start(duration, at_s) == state.window_start.load(Ordering::Relaxed) {
                state.local.fetch_add(spend, Ordering::Relaxed);
            }
        }
        if credits > 0
            && let Some(team) = budgets.iter().find(|b| b.scope == Scope::Team)
        {
            self.state(Scope::Team, team.id)
                .credits_local
                .fetch_add(credits, Ordering::Relaxed);
        }
    }
}

/// Lowers `cell` by `by`, never below zero: a confirmation racing a window
/// change must not leave a negative spend that lets requests through.
fn sub_floor_zero(cell: &AtomicI64, by: i64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(by).max(0))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_189_410;

    fn key_budget(max: i64, duration: &str) -> Budget<'_> {
        Budget {
            scope: Scope::Key,
            id: "k1",
            max_budget: Some(max),
            budget_duration: duration,
        }
    }

    #[test]
    fn sequential_requests_stop_at_the_first_after_spend_passes_the_budget() {
        let ledger = Ledger::default();
        let budgets = [key_budget(100, "")];
        let mut admitted = 0;
        for _ in 0..10 {
            match ledger.admit(&budgets, None, 60, 1, NOW) {
                Ok(r) => {
                    admitted += 1;
                    r.settle(30, 0);
                }
                Err(Refusal::Budget { spend, .. }) => {
                    assert!(spend > 100, "{spend}");
                    break;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        // Admitted at 0, 30, 60 and 90; refused at 120, above 100.
        assert_eq!(admitted, 4);
    }

    #[test]
    fn concurrent_requests_see_each_others_reservations() {
        let ledger = Ledger::default();
        let budgets = [key_budget(100, "")];
        let held: Vec<_> = (0..10)
            .filter_map(|_| ledger.admit(&budgets, None, 40, 1, NOW).ok())
            .collect();
        // 0 and 40 and 80 are not above 100; 120 is.
        assert_eq!(held.len(), 3);
        drop(held);
        assert!(ledger.admit(&budgets, None, 40, 1, NOW).is_ok());
    }

    #[test]
    fn a_zero_budget_leaves_free_models_usable() {
        let ledger = Ledger::default();
        let budgets = [key_budget(0, "")];
        for _ in 0..3 {
            ledger
                .admit(&budgets, None, 0, 1, NOW)
                .unwrap()
                .settle(0, 0);
        }
        ledger
            .admit(&budgets, None, 5, 1, NOW)
            .unwrap()
            .settle(1, 0);
        assert!(ledger.admit(&budgets, None, 0, 1, NOW).is_err());
    }

    #[test]
    fn a_window_resets_the_spend() {
        let ledger = Ledger::default();
        let budgets = [key_budget(10, "30s")];
        ledger
            .admit(&budgets, None, 0, 1, NOW)
            .unwrap()
            .settle(11, 0);
        let refused = ledger.admit(&budgets, None, 0, 1, NOW).unwrap_err();
        assert_eq!(
            refused,
            Refusal::Budget {
                scope: Scope::Key,
                id: "k1".into(),
                spend: 11,
                max_budget: 10,
                resets_at: Some(NOW - 10 + 30),
            }
        );
        assert!(ledger.admit(&budgets, None, 0, 1, NOW + 20).is_ok());
    }

    #[test]
    fn credits_are_counted_not_priced() {
        let ledger = Ledger::default();
        let ask = CreditAsk {
            team_id: "t",
            allocated: 3,
            per_call: 1,
        };
        let held: Vec<_> = (0..5)
            .filter_map(|_| ledger.admit(&[], Some(ask), 0, 1, NOW).ok())
            .collect();
        assert_eq!(held.len(), 3);
        for r in held {
            r.settle(0, 1);
        }
        assert!(matches!(
            ledger.admit(&[], Some(ask), 0, 1, NOW),
            Err(Refusal::Credits { used: 3, .. })
        ));
        // A deployment that charges nothing needs none.
        let free = CreditAsk { per_call: 0, ..ask };
        assert!(ledger.admit(&[], Some(free), 0, 1, NOW).is_ok());
    }

    #[test]
    fn reported_totals_replace_local_spend_once_confirmed() {
        let ledger = Ledger::default();
        let budgets = [key_budget(100, "1h")];
        ledger
            .admit(&budgets, None, 0, 1, NOW)
            .unwrap()
            .settle(70, 0);
        let state = ledger.get(Scope::Key, "k1").unwrap();
        assert_eq!(state.spend(), 70);
        // Another data plane spent 20; the control plane counted both.
        let total = UsageTotal {
            scope: UsageScope::Key as i32,
            id: "k1".into(),
            window_start_s: window::start(3600, NOW),
            budget_duration: "1h".into(),
            window_spend: 90,
            credits_used: 0,
            revision: 7,
        };
        ledger.reported(std::slice::from_ref(&total));
        // Conservative until the batch is confirmed.
        assert_eq!(state.spend(), 160);
        ledger.confirmed(Scope::Key, "k1", NOW, 70, 0);
        assert_eq!(state.spend(), 90);
        // Totals of a scope no request here has used are kept for when one does.
        ledger.reported(&[UsageTotal {
            id: "k2".into(),
            window_spend: 101,
            revision: 3,
            ..total.clone()
        }]);
        let k2 = [Budget {
            id: "k2",
            ..budgets[0]
        }];
        assert!(ledger.admit(&k2, None, 0, 1, NOW).is_err());
        // An older total changes nothing.
        ledger.reported(&[UsageTotal {
            window_spend: 5,
            revision: 6,
            ..total.clone()
        }]);
        assert_eq!(state.spend(), 90);
        // A total from an earlier window does not count in this one.
        ledger.reported(&[UsageTotal {
            window_start_s: window::start(3600, NOW) - 3600,
            window_spend: 1000,
            revision: 8,
            ..total
        }]);
        assert_eq!(state.spend(), 90);
    }

    #[test]
    fn in_a_fleet_each_data_plane_spends_only_its_share_of_what_is_left() {
        let ledger = Ledger::default();
        let budgets = [key_budget(900, "")];
        // Three data planes: 300 each beyond what is counted.
        let mut spent = 0;
        while let Ok(r) = ledger.admit(&budgets, None, 0, 3, NOW) {
            r.settle(100, 0);
            spent += 100;
        }
        assert_eq!(spent, 300 + 100);
        assert!(matches!(
            ledger.admit(&budgets, None, 0, 3, NOW),
            Err(Refusal::Pacing { share: 300, .. })
        ));
        // The control plane counted 600 (this one's 400 and 200 elsewhere):
        // 300 left, 100 of it this one's; its 400 are no longer local.
        ledger.reported(&[UsageTotal {
            scope: UsageScope::Key as i32,
            id: "k1".into(),
            window_start_s: 0,
            budget_duration: String::new(),
            window_spend: 600,
            credits_used: 0,
            revision: 1,
        }]);
        ledger.confirmed(Scope::Key, "k1", NOW, 400, 0);
        ledger
            .admit(&budgets, None, 0, 3, NOW)
            .unwrap()
            .settle(100, 0);
        ledger
            .admit(&budgets, None, 0, 3, NOW)
            .unwrap()
            .settle(100, 0);
        assert!(ledger.admit(&budgets, None, 0, 3, NOW).is_err());
    }

    #[test]
    fn refused_requests_hold_nothing() {
        let ledger = Ledger::default();
        let budgets = [
            key_budget(1000, ""),
            Budget {
                scope: Scope::Team,
                id: "t",
                max_budget: Some(10),
                budget_duration: "",
            },
        ];
        assert!(ledger.admit(&budgets, None, 20, 1, NOW).is_ok());
        ledger
            .admit(&budgets, None, 0, 1, NOW)
            .unwrap()
            .settle(11, 0);
        for _ in 0..3 {
            assert!(ledger.admit(&budgets, None, 20, 1, NOW).is_err());
        }
        let key = ledger.get(Scope::Key, "k1").unwrap();
        assert_eq!(key.reserved.load(Ordering::Relaxed), 0);
    }
}
