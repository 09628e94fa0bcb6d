//! Stage 4 of the request path: which deployment of the resolved model group
//! serves this request (DESIGN §5).
//!
//! For now: one weighted random pick (`simple-shuffle`) among the group's
//! usable deployments, by `weight`, else `rpm`, else `tpm`, else evenly.
//!
//! The seam for what comes later (retries on another deployment, cooldowns,
//! fallbacks, the other strategies) is [`pick`]'s `exclude` argument and
//! [`crate::upstream::UpstreamError::is_retryable`]: the caller will loop,
//! excluding deployments that failed, and consult cooldown state here.

pub mod attempts;
pub mod classify;
pub mod pick;
pub mod plan;
pub mod policy;
pub mod state;
pub mod table;

use rand::Rng;

use crate::config::snapshot::{ModelGroup, ResolvedDeployment};

/// Picks a deployment of `group`, skipping those whose id is in `exclude`.
/// `None` when no deployment is left.
pub fn pick<'g>(group: &'g ModelGroup, exclude: &[&str]) -> Option<&'g ResolvedDeployment> {
    pick_with(group.deployments(), exclude, &mut rand::rng())
}

fn pick_with<'g>(
    deployments: &'g [ResolvedDeployment],
    exclude: &[&str],
    rng: &mut impl Rng,
) -> Option<&'g ResolvedDeployment> {
    // Walked twice rather than collected: no allocation per request.
    let candidates = || {
        deployments
            .iter()
            .filter(|d| !exclude.contains(&d.deployment().id.as_str()))
    };
    let total: u64 = candidates()
        .map(weight_of)
        .fold(0u64, |a, w| a.saturating_add(w));
    if total == 0 {
        // No deployment says anything about its size: evenly.
        return match candidates().count() {
            0 => None,
            n => candidates().nth(rng.random_range(0..n)),
        };
    }
    let mut ticket = rng.random_range(0..total);
    for d in candidates() {
        let w = weight_of(d);
        if ticket < w {
            return Some(d);
        }
        ticket -= w;
    }
    candidates().next_back()
}

/// LiteLLM's simple-shuffle: `weight` if any deployment sets one, else
/// `rpm`, else `tpm`. Mixed groups use the first one a deployment sets.
fn weight_of(d: &ResolvedDeployment) -> u64 {
    let d = d.deployment();
    [u64::from(d.weight), d.rpm, d.tpm]
        .into_iter()
        .find(|w| *w > 0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::snapshot::Config;
    use sluice_proto::admin::v1::Deployment;
    use sluice_proto::config::v1::Snapshot;

    fn config(weights: &[u32]) -> Config {
        let deployments = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Deployment {
                id: format!("d{i}"),
                model_name: "g".into(),
                provider: "mock".into(),
                model: "m".into(),
                weight: *w,
                ..Default::default()
            })
            .collect();
        Config::from_snapshot(Snapshot {
            revision: 1,
            deployments,
            ..Default::default()
        })
        .expect("valid")
    }

    #[test]
    fn weights_decide_the_share() {
        let config = config(&[1, 3, 0]);
        let group = config.model_group("g").expect("group");
        let mut counts = [0u32; 3];
        for _ in 0..4000 {
            let d = pick(group, &[]).expect("some");
            let i: usize = d.deployment().id[1..].parse().expect("index");
            counts[i] += 1;
        }
        assert_eq!(
            counts[2], 0,
            "weight 0 beside weighted ones is never picked"
        );
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn exclusions_and_empty_groups() {
        let config = config(&[0, 0]);
        let group = config.model_group("g").expect("group");
        assert_eq!(pick(group, &["d0"]).expect("d1").deployment().id, "d1");
        assert!(pick(group, &["d0", "d1"]).is_none());
    }
}
