//! The routing state of every deployment in one config, found by group, and
//! the policy read from that config's router settings; rebuilt when a new
//! config is in force, carrying over the state of each deployment whose
//! upstream did not change.
//!
//! A deployment keeps its state (in flight, latency, minute usage,
//! failures, cooldowns) across a config change when its id and its upstream
//! (provider, model, `api_base`, `api_key`, `api_version`) are the same:
//! changing its weight, `rpm` or `order` does not forget that it is cooling.
//! A removed deployment's state goes with the old table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sluice_proto::admin::v1::Deployment;

use super::policy::Policy;
use super::state::DeploymentState;
use crate::config::snapshot::Config;

type Names = foldhash::fast::RandomState;

/// One config's routing view.
#[derive(Debug)]
pub struct Table {
    generation: u64,
    policy: Policy,
    /// By group name: the states of the group's deployments, in the order
    /// of [`crate::config::snapshot::ModelGroup::deployments`].
    groups: HashMap<String, Arc<[Arc<DeploymentState>]>, Names>,
    /// By deployment id, with the upstream each state belongs to.
    by_id: HashMap<String, (Upstream, Arc<DeploymentState>), Names>,
}

/// What makes a deployment the same upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Upstream {
    provider: String,
    model: String,
    api_base: String,
    api_key: String,
    api_version: String,
}

impl Upstream {
    fn of(d: &Deployment) -> Upstream {
        Upstream {
            provider: d.provider.clone(),
            model: d.model.clone(),
            api_base: d.api_base.clone(),
            api_key: d.api_key.clone(),
            api_version: d.api_version.clone(),
        }
    }
}

impl Table {
    fn empty() -> Table {
        Table {
            generation: 0,
            policy: Policy::default(),
            groups: HashMap::default(),
            by_id: HashMap::default(),
        }
    }

    /// The table for `config`, reusing `previous`'s state where the
    /// upstream is unchanged; `fleet` seeds cooldowns heard for deployments
    /// that had no state yet.
    fn build(config: &Config, previous: &Table, fleet: &HashMap<String, u64>) -> Table {
        let mut by_id: HashMap<String, (Upstream, Arc<DeploymentState>), Names> =
            HashMap::default();
        let mut groups = HashMap::default();
        for group in config.model_groups() {
            let states: Arc<[Arc<DeploymentState>]> = group
                .deployments()
                .iter()
                .map(|rd| {
                    let d = rd.deployment();
                    if let Some((_, state)) = by_id.get(&d.id) {
                        return Arc::clone(state);
                    }
                    let upstream = Upstream::of(d);
                    let state = match previous.by_id.get(&d.id) {
                        Some((was, state)) if *was == upstream => Arc::clone(state),
                        _ => {
                            let state = Arc::new(DeploymentState::new(&d.id));
                            if let Some(&until) = fleet.get(&d.id) {
                                state.fleet_cooldown(until);
                            }
                            state
                        }
                    };
                    by_id.insert(d.id.clone(), (upstream, Arc::clone(&state)));
                    state
                })
                .collect();
            groups.insert(group.name().to_owned(), states);
        }
        Table {
            generation: config.generation(),
            policy: Policy::from_settings(config.router_settings()),
            groups,
            by_id,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The states of `group`'s deployments, aligned with its deployments.
    pub fn group(&self, group: &str) -> &[Arc<DeploymentState>] {
        self.groups.get(group).map_or(&[], |s| s)
    }

    pub fn deployment(&self, id: &str) -> Option<&Arc<DeploymentState>> {
        self.by_id.get(id).map(|(_, s)| s)
    }
}

/// The routing state of this data plane: the table of the config in force,
/// and the fleet's cooldowns.
#[derive(Debug)]
pub struct Tables {
    current: ArcSwap<Table>,
    /// Fleet cooldowns heard, by deployment id (unix ms): kept to seed the
    /// state of a deployment that arrives after its cooldown did. Written
    /// only when the control plane sends cooldowns; read on rebuilds.
    fleet: Mutex<HashMap<String, u64>>,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            current: ArcSwap::from_pointee(Table::empty()),
            fleet: Mutex::new(HashMap::new()),
        }
    }
}

impl Tables {
    /// The table for `config`: the one in force when it was built for this
    /// config, else a new one (the first request after a config change
    /// builds it; a race builds it twice and keeps one, sharing the states).
    pub fn for_config(&self, config: &Config) -> Arc<Table> {
        let current = self.current.load_full();
        if current.generation == config.generation() {
            return current;
        }
        let fleet = self.fleet.lock().map(|f| f.clone()).unwrap_or_default();
        let built = Arc::new(Table::build(config, &current, &fleet));
        let previous = self.current.compare_and_swap(&current, Arc::clone(&built));
        if Arc::ptr_eq(&previous, &current) {
            built
        } else if previous.generation == config.generation() {
            // Another thread built it first: use theirs, so both see one
            // set of states.
            Arc::clone(&previous)
        } else {
            built
        }
    }

    /// The table last built, whatever config it was for (for
    /// `/debug/routing` and fleet cooldowns).
    pub fn latest(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Another data plane cooled `deployment` until `until` (unix ms on
    /// this clock). Returns whether that was news here.
    pub fn fleet_cooldown(&self, deployment: &str, until: u64, now: u64) -> bool {
        if let Ok(mut fleet) = self.fleet.lock() {
            fleet.retain(|_, u| *u > now);
            let held = fleet.entry(deployment.to_owned()).or_insert(0);
            *held = (*held).max(until);
        }
        self.latest()
            .deployment(deployment)
            .is_some_and(|s| s.fleet_cooldown(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::config::v1::Snapshot;

    fn config(deployments: Vec<Deployment>) -> Config {
        Config::from_snapshot(Snapshot {
            revision: 1,
            deployments,
            ..Default::default()
        })
        .expect("valid")
    }

    fn d(id: &str, weight: u32) -> Deployment {
        Deployment {
            id: id.into(),
            model_name: "g".into(),
            provider: "mock".into(),
            model: "m".into(),
            weight,
            ..Default::default()
        }
    }

    #[test]
    fn unchanged_upstreams_keep_their_state_and_removed_ones_go() {
        let tables = Tables::default();
        let one = config(vec![d("a", 1), d("b", 1)]);
        let t1 = tables.for_config(&one);
        assert!(Arc::ptr_eq(&t1, &tables.for_config(&one)), "built once");
        t1.deployment("a").unwrap().fleet_cooldown(u64::MAX);
        // Weight changed, b removed, c added.
        let two = config(vec![d("a", 5), d("c", 1)]);
        let t2 = tables.for_config(&two);
        assert!(t2.deployment("a").unwrap().is_cooling(0));
        assert!(t2.deployment("b").is_none());
        assert!(!t2.deployment("c").unwrap().is_cooling(0));
        assert_eq!(t2.group("g").len(), 2);
        // A new upstream under the same id starts afresh.
        let three = config(vec![Deployment {
            api_base: "mock://?latency_ms=1".into(),
            ..d("a", 5)
        }]);
        assert!(
            !tables
                .for_config(&three)
                .deployment("a")
                .unwrap()
                .is_cooling(0)
        );
    }

    #[test]
    fn fleet_cooldowns_reach_current_and_later_deployments() {
        let tables = Tables::default();
        let t = tables.for_config(&config(vec![d("a", 1)]));
        assert!(tables.fleet_cooldown("a", 10_000, 0));
        assert!(!tables.fleet_cooldown("a", 5_000, 0), "not news");
        assert!(t.deployment("a").unwrap().is_cooling(9_999));
        // Heard before its deployment arrived.
        assert!(!tables.fleet_cooldown("late", 10_000, 0));
        let t = tables.for_config(&config(vec![d("a", 1), d("late", 1)]));
        assert!(t.deployment("late").unwrap().is_cooling(9_999));
    }
}
