//! Which deployment of a group takes the next attempt (DESIGN §5): a pure
//! function of (the group's deployments, their state, the policy, the time,
//! what this request already tried, a random source).
//!
//! Availability is decided inside the pick, in this order:
//!
//! 1. usable: not cooling (its own or the fleet's cooldown), not at its own
//!    `rpm`/`tpm` this minute, and, with `enable_pre_call_checks`, a
//!    `max_input_tokens` that fits the prompt's estimate;
//! 2. not yet tried by this request, when any untried one is usable (else a
//!    retry goes to one already tried, after a backoff: the caller's
//!    choice, by [`Tried::allow_repeat`]);
//! 3. the lowest `order` among those (0, unset, ranks after every set
//!    order): a higher order is used only when every lower one is out;
//! 4. the strategy among what is left.

use rand::Rng;
use sluice_proto::admin::v1::Deployment;

use super::policy::{Policy, Strategy};
use super::state::DeploymentState;

/// The share of latency-based picks that go to a random usable deployment,
/// so one that recovered is measured again and noticed.
pub const EXPLORATION: f64 = 0.05;

/// A deployment without `tpm` counts as this many tokens a minute for
/// usage-based routing: big enough that a capped deployment near its cap
/// loses against it, small enough that its use still counts.
const UNCAPPED_TPM: u64 = 1_000_000;

/// The deployments this request already tried in the group, by index.
#[derive(Debug, Default, Clone)]
pub struct Tried {
    bits: Vec<u64>,
    /// Whether a tried deployment may be picked again.
    repeat: bool,
    /// Deployments this request may not use at all (repeats or not).
    excluded: Vec<u64>,
}

impl Tried {
    pub fn insert(&mut self, i: usize) {
        let (word, bit) = (i / 64, i % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << bit;
    }

    pub fn contains(&self, i: usize) -> bool {
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Deployment `i` is never picked for this request (until [`Tried::clear`]).
    pub fn exclude(&mut self, i: usize) {
        let (word, bit) = (i / 64, i % 64);
        if self.excluded.len() <= word {
            self.excluded.resize(word + 1, 0);
        }
        self.excluded[word] |= 1 << bit;
    }

    pub fn is_excluded(&self, i: usize) -> bool {
        self.excluded
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// From now on, deployments already tried may be picked again.
    pub fn allow_repeat(&mut self) {
        self.repeat = true;
    }

    pub fn clear(&mut self) {
        self.bits.clear();
        self.excluded.clear();
        self.repeat = false;
    }
}

/// What the pick needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// The prompt's estimated tokens (for caps and pre-call checks).
    pub prompt_tokens: u64,
    pub now: u64,
}

/// Why no deployment was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The group has no usable deployment at all.
    Empty,
    /// Every deployment is cooling or at its cap; the first is back at
    /// `retry_at` (unix ms).
    Resting { retry_at: u64 },
    /// Every deployment the pre-call check would leave is too small for
    /// the prompt: the request wants a larger context window.
    TooSmall,
    /// Every usable deployment was tried and repeats are not allowed.
    AllTried,
}

/// What the pick reads of a deployment: the config's resolved deployment,
/// or a bare one in tests and benchmarks.
pub trait Routable {
    fn deployment(&self) -> &Deployment;
}

impl Routable for Deployment {
    fn deployment(&self) -> &Deployment {
        self
    }
}

impl Routable for crate::config::snapshot::ResolvedDeployment {
    fn deployment(&self) -> &Deployment {
        crate::config::snapshot::ResolvedDeployment::deployment(self)
    }
}

fn rank(d: &Deployment) -> u32 {
    if d.order == 0 { u32::MAX } else { d.order }
}

/// Picks the index of the deployment for the next attempt.
pub fn pick<D: Routable>(
    deployments: &[D],
    states: &[impl AsRef<DeploymentState>],
    policy: &Policy,
    ask: Ask,
    tried: &Tried,
    rng: &mut impl Rng,
) -> Result<usize, Unavailable> {
    debug_assert_eq!(deployments.len(), states.len());
    if deployments.is_empty() {
        return Err(Unavailable::Empty);
    }
    let now = ask.now;
    let mut retry_at = u64::MAX;
    let mut too_small = 0usize;
    let mut usable_tried = 0usize;
    // The best order seen and how many usable, untried ones share it: one
    // pass, no allocation.
    let mut best_rank = u32::MAX;
    let mut any = false;
    let mut excluded = 0usize;
    for (i, (d, s)) in deployments.iter().zip(states).enumerate() {
        let (d, s) = (d.deployment(), s.as_ref());
        if tried.is_excluded(i) {
            excluded += 1;
            continue;
        }
        if policy.pre_call_checks
            && d.max_input_tokens
                .is_some_and(|max| ask.prompt_tokens > max)
        {
            too_small += 1;
            continue;
        }
        if let Some((until, _)) = s.cooling(now) {
            retry_at = retry_at.min(until);
            continue;
        }
        if s.at_cap(d.rpm, d.tpm, now) {
            retry_at = retry_at.min((now / 60_000 + 1) * 60_000);
            continue;
        }
        if tried.contains(i) && !tried.repeat {
            usable_tried += 1;
            continue;
        }
        let r = rank(d);
        if !any || r < best_rank {
            best_rank = r;
        }
        any = true;
    }
    if !any {
        return Err(if usable_tried > 0 {
            Unavailable::AllTried
        } else if too_small > 0 && too_small + excluded == deployments.len() {
            Unavailable::TooSmall
        } else if retry_at < u64::MAX {
            Unavailable::Resting { retry_at }
        } else {
            Unavailable::Empty
        });
    }
    let candidate = |i: usize| {
        let (d, s) = (deployments[i].deployment(), states[i].as_ref());
        !tried.is_excluded(i)
            && fits(policy, d, ask.prompt_tokens)
            && !s.is_cooling(now)
            && !s.at_cap(d.rpm, d.tpm, now)
            && (tried.repeat || !tried.contains(i))
            && rank(d) == best_rank
    };
    let candidates = || (0..deployments.len()).filter(|&i| candidate(i));
    let chosen = match policy.strategy {
        Strategy::SimpleShuffle => weighted(
            candidates(),
            |i| weight_of(deployments[i].deployment()),
            rng,
        ),
        Strategy::LeastBusy => lowest(
            candidates(),
            |i| u64::from(states[i].as_ref().in_flight()),
            rng,
        ),
        Strategy::LatencyBased => {
            if rng.random_bool(EXPLORATION) {
                uniform(candidates(), rng)
            } else {
                let latency = |i: usize| {
                    states[i]
                        .as_ref()
                        .latency()
                        .map_or(0, |l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX))
                };
                let best = candidates().map(latency).min().unwrap_or(0);
                // LiteLLM's lowest_latency_buffer: anything within that
                // share of the fastest is as good as the fastest.
                let limit = (best as f64 * (1.0 + policy.lowest_latency_buffer)) as u64;
                uniform(candidates().filter(|&i| latency(i) <= limit), rng)
            }
        }
        Strategy::UsageBased => lowest(
            candidates(),
            |i| {
                let (d, s) = (deployments[i].deployment(), states[i].as_ref());
                let (_, tokens) = s.minute_usage(now);
                let tpm = if d.tpm > 0 { d.tpm } else { UNCAPPED_TPM };
                // Use per million of the cap, so caps of any size compare.
                tokens.saturating_mul(1_000_000) / tpm
            },
            rng,
        ),
        Strategy::CostBased => {
            let cost = |i: usize| {
                let d = deployments[i].deployment();
                d.input_cost_per_token + d.output_cost_per_token
            };
            let best = candidates().map(cost).fold(f64::INFINITY, f64::min);
            uniform(candidates().filter(|&i| cost(i) <= best), rng)
        }
    };
    chosen.ok_or(Unavailable::Empty)
}

/// The pre-call check: whether the prompt fits the deployment's
/// `max_input_tokens` (always, without `enable_pre_call_checks`).
fn fits(policy: &Policy, d: &Deployment, prompt_tokens: u64) -> bool {
    !policy.pre_call_checks || d.max_input_tokens.is_none_or(|max| prompt_tokens <= max)
}

/// LiteLLM's simple-shuffle weight: `weight` if set, else `rpm`, else `tpm`.
pub fn weight_of(d: &Deployment) -> u64 {
    [u64::from(d.weight), d.rpm, d.tpm]
        .into_iter()
        .find(|w| *w > 0)
        .unwrap_or(0)
}

/// A weighted draw; evenly when no candidate has a weight.
fn weighted(
    candidates: impl Iterator<Item = usize> + Clone,
    weight: impl Fn(usize) -> u64,
    rng: &mut impl Rng,
) -> Option<usize> {
    let total = candidates
        .clone()
        .map(&weight)
        .fold(0u64, |a, w| a.saturating_add(w));
    if total == 0 {
        return uniform(candidates, rng);
    }
    let mut ticket = rng.random_range(0..total);
    let mut last = None;
    for i in candidates {
        let w = weight(i);
        if ticket < w {
            return Some(i);
        }
        ticket -= w;
        last = Some(i);
    }
    last
}

/// The candidate with the lowest score, ties drawn evenly (reservoir
/// sampling: one pass, no allocation).
fn lowest(
    candidates: impl Iterator<Item = usize>,
    score: impl Fn(usize) -> u64,
    rng: &mut impl Rng,
) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    let mut ties = 0u32;
    for i in candidates {
        let s = score(i);
        match best {
            Some((b, _)) if s > b => {}
            Some((b, _)) if s == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((s, i));
                }
            }
            _ => {
                best = Some((s, i));
                ties = 1;
            }
        }
    }
    best.map(|(_, i)| i)
}

fn uniform(candidates: impl Iterator<Item = usize>, rng: &mut impl Rng) -> Option<usize> {
    lowest(candidates, |_| 0, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::classify::{ErrorClass, without_answer};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::time::Duration;

    const NOW: u64 = 1_700_000_000_000;

    struct Group {
        deployments: Vec<Deployment>,
        states: Vec<DeploymentState>,
    }

    fn group(deployments: Vec<Deployment>) -> Group {
        let states = deployments
            .iter()
            .map(|d| DeploymentState::new(&d.id))
            .collect();
        Group {
            deployments,
            states,
        }
    }

    fn d(i: usize) -> Deployment {
        Deployment {
            id: format!("d{i}"),
            ..Default::default()
        }
    }

    fn ask() -> Ask {
        Ask {
            prompt_tokens: 10,
            now: NOW,
        }
    }

    fn counts(g: &Group, policy: &Policy, n: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; g.deployments.len()];
        for _ in 0..n {
            let i = pick(
                &g.deployments,
                &g.states,
                policy,
                ask(),
                &Tried::default(),
                &mut rng,
            )
            .expect("picked");
            counts[i] += 1;
        }
        counts
    }

    fn policy(strategy: Strategy) -> Policy {
        Policy {
            strategy,
            ..Policy::default()
        }
    }

    #[test]
    fn weights_decide_the_share() {
        let g = group(vec![
            Deployment { weight: 1, ..d(0) },
            Deployment { weight: 3, ..d(1) },
            Deployment { weight: 0, ..d(2) },
        ]);
        let c = counts(&g, &Policy::default(), 4000);
        assert_eq!(c[2], 0, "weight 0 beside weighted ones is never picked");
        assert!((900..1100).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn rpm_decides_without_weights_and_evenly_without_either() {
        let g = group(vec![
            Deployment { rpm: 100, ..d(0) },
            Deployment { rpm: 300, ..d(1) },
        ]);
        let c = counts(&g, &Policy::default(), 4000);
        assert!((900..1100).contains(&c[0]), "{c:?}");
        let g = group(vec![d(0), d(1)]);
        let c = counts(&g, &Policy::default(), 4000);
        assert!((1800..2200).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn cooling_and_capped_deployments_are_skipped() {
        let w = |i| Deployment { weight: 1, ..d(i) };
        let ds = [Deployment { rpm: 1, ..w(0) }, w(1), w(2)];
        let states: Vec<_> = ds
            .iter()
            .map(|d| std::sync::Arc::new(DeploymentState::new(&d.id)))
            .collect();
        let p = Policy::default();
        let mut rng = StdRng::seed_from_u64(1);
        states[1].fleet_cooldown(NOW + 1_000);
        let mut seen = [0; 3];
        for _ in 0..200 {
            seen[pick(&ds, &states, &p, ask(), &Tried::default(), &mut rng).expect("one")] += 1;
        }
        assert_eq!(seen[1], 0, "cooling: {seen:?}");
        assert!(seen[0] > 0 && seen[2] > 0, "{seen:?}");
        // d0 makes its one request of the minute: at its cap.
        let _a = states[0].start(NOW, 1);
        for _ in 0..50 {
            assert_eq!(
                pick(&ds, &states, &p, ask(), &Tried::default(), &mut rng),
                Ok(2)
            );
        }
        states[2].fleet_cooldown(NOW + 3_000);
        assert_eq!(
            pick(&ds, &states, &p, ask(), &Tried::default(), &mut rng),
            Err(Unavailable::Resting {
                retry_at: NOW + 1_000
            }),
            "back when the first cooldown ends (before the minute does)"
        );
    }

    #[test]
    fn excluded_deployments_are_never_picked_even_on_repeat() {
        let g = group(vec![d(0), d(1), d(2)]);
        let p = Policy::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut tried = Tried::default();
        tried.exclude(0);
        tried.exclude(2);
        tried.insert(1);
        assert_eq!(
            pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng),
            Err(Unavailable::AllTried)
        );
        tried.allow_repeat();
        for _ in 0..50 {
            assert_eq!(
                pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng),
                Ok(1)
            );
        }
        tried.exclude(1);
        assert_eq!(
            pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng),
            Err(Unavailable::Empty)
        );
        tried.clear();
        assert!(pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng).is_ok());
    }

    #[test]
    fn tried_deployments_only_on_repeat() {
        let g = group(vec![d(0), d(1)]);
        let p = Policy::default();
        let mut rng = StdRng::seed_from_u64(2);
        let mut tried = Tried::default();
        tried.insert(0);
        for _ in 0..50 {
            assert_eq!(
                pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng),
                Ok(1)
            );
        }
        tried.insert(1);
        assert_eq!(
            pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng),
            Err(Unavailable::AllTried)
        );
        tried.allow_repeat();
        assert!(pick(&g.deployments, &g.states, &p, ask(), &tried, &mut rng).is_ok());
        tried.insert(130);
        assert!(tried.contains(130) && !tried.contains(129));
    }

    #[test]
    fn order_ranks_and_is_passed_over_while_the_first_cools() {
        let g = group(vec![
            Deployment { order: 2, ..d(0) },
            Deployment { order: 1, ..d(1) },
            Deployment { order: 0, ..d(2) },
            Deployment { order: 1, ..d(3) },
        ]);
        let p = Policy::default();
        let c = counts(&g, &p, 400);
        assert_eq!((c[0], c[2]), (0, 0), "{c:?}");
        assert!(c[1] > 100 && c[3] > 100, "{c:?}");
        g.states[1].fleet_cooldown(NOW + 1);
        g.states[3].fleet_cooldown(NOW + 1);
        assert_eq!(
            counts(&g, &p, 50)[0],
            50,
            "order 2 while every order 1 cools"
        );
        g.states[0].fleet_cooldown(NOW + 1);
        assert_eq!(counts(&g, &p, 50)[2], 50, "unset order last");
    }

    #[test]
    fn least_busy_avoids_the_busy_one() {
        let ds = vec![d(0), d(1), d(2)];
        let states: Vec<_> = ds
            .iter()
            .map(|d| std::sync::Arc::new(DeploymentState::new(&d.id)))
            .collect();
        let _busy = [
            states[0].start(NOW, 0),
            states[0].start(NOW, 0),
            states[2].start(NOW, 0),
        ];
        let p = policy(Strategy::LeastBusy);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            assert_eq!(
                pick(&ds, &states, &p, ask(), &Tried::default(), &mut rng),
                Ok(1)
            );
        }
    }

    #[test]
    fn latency_based_prefers_the_fast_and_explores() {
        let g = group(vec![d(0), d(1)]);
        g.states[0].record_latency(Duration::from_millis(500));
        g.states[1].record_latency(Duration::from_millis(50));
        let c = counts(&g, &policy(Strategy::LatencyBased), 4000);
        // The slow one only gets (half of) the exploration share.
        assert!(c[0] > 40 && c[0] < 200, "{c:?}");
        // Within the buffer both are as good.
        let p = Policy {
            lowest_latency_buffer: 10.0,
            ..policy(Strategy::LatencyBased)
        };
        let c = counts(&g, &p, 4000);
        assert!(c[0] > 1700, "{c:?}");
        // One never measured is tried first.
        let g = group(vec![d(0), d(1)]);
        g.states[0].record_latency(Duration::from_millis(5));
        let c = counts(&g, &policy(Strategy::LatencyBased), 1000);
        assert!(c[1] > 900, "{c:?}");
    }

    #[test]
    fn usage_based_takes_the_least_used_share_of_tpm() {
        let g = group(vec![
            Deployment { tpm: 1000, ..d(0) },
            Deployment {
                tpm: 100_000,
                ..d(1)
            },
        ]);
        g.states[0].add_tokens(NOW, 500); // half its cap
        g.states[1].add_tokens(NOW, 5_000); // a twentieth
        let c = counts(&g, &policy(Strategy::UsageBased), 100);
        assert_eq!(c, vec![0, 100]);
    }

    #[test]
    fn cost_based_takes_the_cheapest_and_shuffles_ties() {
        let g = group(vec![
            Deployment {
                input_cost_per_token: 1e-6,
                output_cost_per_token: 2e-6,
                ..d(0)
            },
            Deployment {
                input_cost_per_token: 1e-7,
                output_cost_per_token: 2e-7,
                ..d(1)
            },
            Deployment {
                input_cost_per_token: 1e-7,
                output_cost_per_token: 2e-7,
                ..d(2)
            },
        ]);
        let c = counts(&g, &policy(Strategy::CostBased), 1000);
        assert_eq!(c[0], 0);
        assert!(c[1] > 400 && c[2] > 400, "{c:?}");
    }

    #[test]
    fn pre_call_checks_skip_small_windows() {
        let g = group(vec![
            Deployment {
                max_input_tokens: Some(5),
                ..d(0)
            },
            d(1),
        ]);
        let p = Policy {
            pre_call_checks: true,
            ..Policy::default()
        };
        let c = counts(&g, &p, 100);
        assert_eq!(c, vec![0, 100]);
        let g = group(vec![Deployment {
            max_input_tokens: Some(5),
            ..d(0)
        }]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            pick(
                &g.deployments,
                &g.states,
                &p,
                ask(),
                &Tried::default(),
                &mut rng
            ),
            Err(Unavailable::TooSmall)
        );
        // Without the setting the deployment is called (and its error decides).
        assert_eq!(
            pick(
                &g.deployments,
                &g.states,
                &Policy::default(),
                ask(),
                &Tried::default(),
                &mut rng
            ),
            Ok(0)
        );
    }

    #[test]
    fn a_cooled_deployment_comes_back() {
        let g = group(vec![d(0)]);
        let p = Policy::default();
        g.states[0].record_failure(&without_answer(ErrorClass::RateLimit), &p, NOW);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            pick(
                &g.deployments,
                &g.states,
                &p,
                ask(),
                &Tried::default(),
                &mut rng
            ),
            Err(Unavailable::Resting {
                retry_at: NOW + 5_000
            })
        );
        let later = Ask {
            now: NOW + 5_000,
            ..ask()
        };
        assert_eq!(
            pick(
                &g.deployments,
                &g.states,
                &p,
                later,
                &Tried::default(),
                &mut rng
            ),
            Ok(0)
        );
    }
}
