//! The config this data plane serves from, as one value behind an
//! [`ArcSwapOption`]: request handling takes a snapshot of it without a lock
//! and keeps using that value for the whole request, so it never sees half a
//! change. Updates build and validate the next value first and publish it
//! whole; a refused update leaves the last good value in place.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::config::secrets::{Env, ProcessEnv};
use crate::config::snapshot::{Config, SnapshotError};
use crate::config::wire::{ControlPlaneMessageWire, DeltaWire, SnapshotWire, UpdateWire};
use crate::metrics::Metrics;

/// What readiness says before any config was applied and nothing went wrong.
pub const WAITING_FOR_FIRST_CONFIG: &str =
    "waiting for the first configuration from the control plane";

/// The answer to one update: what the stream ACKs or NACKs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied { revision: i64 },
    Refused { revision: i64, reason: String },
}

/// Whether this data plane can serve (`GET /health/readiness`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready { revision: i64 },
    NotReady { reason: String },
}

/// The current config and its history's side effects: metrics, the
/// readiness reason, and a notification for whoever persists it.
pub struct AppliedConfig {
    current: ArcSwapOption<Config>,
    /// Every published value, for the cache writer and for tests that wait
    /// for a revision; a `watch` keeps only the newest, which is what both
    /// want.
    published: watch::Sender<Option<Arc<Config>>>,
    /// Serialises updates: checking a delta's base and swapping in its result
    /// must not interleave with another update.
    update: Mutex<()>,
    /// Why not ready while nothing is applied.
    not_ready: Mutex<String>,
    env: Box<dyn Env>,
    metrics: Arc<Metrics>,
}

impl AppliedConfig {
    /// Provider secrets are resolved from the process environment.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        AppliedConfig::with_env(metrics, ProcessEnv)
    }

    pub fn with_env(metrics: Arc<Metrics>, env: impl Env + 'static) -> Self {
        AppliedConfig {
            current: ArcSwapOption::empty(),
            published: watch::Sender::new(None),
            update: Mutex::new(()),
            not_ready: Mutex::new(WAITING_FOR_FIRST_CONFIG.to_owned()),
            env: Box::new(env),
            metrics,
        }
    }

    /// The config to serve a request from, if any. Lock-free; hold the `Arc`
    /// for the whole request.
    pub fn current(&self) -> Option<Arc<Config>> {
        self.current.load_full()
    }

    /// The revision held, 0 when none: what a Hello carries.
    pub fn revision(&self) -> i64 {
        self.current.load().as_ref().map_or(0, |c| c.revision())
    }

    /// A receiver of every value published from now on (the current one
    /// counts as seen).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Config>>> {
        self.published.subscribe()
    }

    pub fn readiness(&self) -> Readiness {
        match self.current.load().as_ref() {
            Some(config) => Readiness::Ready {
                revision: config.revision(),
            },
            None => Readiness::NotReady {
                reason: self
                    .not_ready
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            },
        }
    }

    /// Says why this data plane is not ready while it holds no config (a
    /// refused cache file, say). Ignored once a config is applied.
    pub fn set_not_ready_reason(&self, reason: impl Into<String>) {
        *self
            .not_ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason.into();
    }

    /// Applies one message of the stream. CPU-bound for a large config: call
    /// it from a blocking thread.
    pub fn apply_message(&self, message: impl Into<ControlPlaneMessageWire>) -> Outcome {
        match message.into().message {
            Some(UpdateWire::Snapshot(s)) => self.apply_snapshot(s),
            Some(UpdateWire::Delta(d)) => self.apply_delta(d),
            // Fleet cooldowns, usage and limits are not configuration: the
            // stream client hands them to the router and the ledger, never
            // here.
            Some(
                UpdateWire::Cooldowns(_)
                | UpdateWire::UsageAck(_)
                | UpdateWire::UsageTotals(_)
                | UpdateWire::LimitLeases(_),
            )
            | None => {
                self.metrics.nacked();
                let reason = "the message carries neither a snapshot nor a delta \
                              (a newer protocol?)"
                    .to_owned();
                tracing::warn!(%reason, "configuration update refused");
                Outcome::Refused {
                    revision: 0,
                    reason,
                }
            }
        }
    }

    /// Replaces the config with `snapshot`'s.
    pub fn apply_snapshot(&self, snapshot: impl Into<SnapshotWire>) -> Outcome {
        let snapshot = snapshot.into();
        self.metrics.snapshot_received();
        let revision = snapshot.revision;
        let _update = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        match Config::load(snapshot, &*self.env) {
            Ok(config) => self.publish(config, started, SystemTime::now(), "snapshot"),
            Err(e) => self.refuse(revision, "snapshot", &e),
        }
    }

    /// Applies `delta` to the held config; refused unless it holds exactly
    /// `delta.from_revision`.
    pub fn apply_delta(&self, delta: impl Into<DeltaWire>) -> Outcome {
        let delta = delta.into();
        self.metrics.delta_received();
        let revision = delta.to_revision;
        let _update = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let result = match self.current.load_full() {
            Some(held) => held.apply_delta(delta, &*self.env),
            None => Err(SnapshotError::RevisionMismatch {
                held: 0,
                from: delta.from_revision,
            }),
        };
        match result {
            Ok(config) => self.publish(config, started, SystemTime::now(), "delta"),
            Err(e) => self.refuse(revision, "delta", &e),
        }
    }

    /// Starts from a snapshot read back from the cache file, written at
    /// `written_at`. Refused (and nothing changes) if it is no longer valid.
    pub fn restore(
        &self,
        snapshot: impl Into<SnapshotWire>,
        written_at: SystemTime,
    ) -> Result<i64, SnapshotError> {
        let _update = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let config = Config::load(snapshot, &*self.env)?;
        let revision = config.revision();
        self.publish(config, started, written_at, "cache");
        Ok(revision)
    }

    fn publish(
        &self,
        config: Config,
        started: Instant,
        applied_at: SystemTime,
        source: &'static str,
    ) -> Outcome {
        let config = Arc::new(config);
        let old = self.current.swap(Some(Arc::clone(&config)));
        let took = started.elapsed();
        let revision = config.revision();
        self.metrics
            .applied(revision, applied_at, took, config.unusable().len());
        self.published.send_replace(Some(Arc::clone(&config)));
        log_news(old.as_deref(), &config);
        if old.as_ref().is_some_and(|o| o.revision() > revision) {
            // A restored or replaced etcd: the control plane's word wins.
            tracing::warn!(
                revision,
                previous = old.as_ref().map(|o| o.revision()),
                "applied a configuration older than the one held"
            );
        }
        tracing::info!(
            revision,
            source,
            keys = config.key_count(),
            model_groups = config.model_groups().len(),
            took_ms = took.as_secs_f64() * 1000.0,
            "configuration applied"
        );
        Outcome::Applied { revision }
    }

    fn refuse(&self, revision: i64, what: &'static str, error: &SnapshotError) -> Outcome {
        self.metrics.nacked();
        let reason = error.to_string();
        let held = self.revision();
        tracing::warn!(revision, held, %reason, "configuration {what} refused; keeping the last good configuration");
        if held == 0 {
            self.set_not_ready_reason(format!(
                "the control plane's configuration at revision {revision} was refused: {reason}"
            ));
        }
        Outcome::Refused { revision, reason }
    }
}

impl std::fmt::Debug for AppliedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppliedConfig")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

/// Logs what the new value skips or cannot use that the old one did not, so
/// a one-key delta does not repeat every warning of the snapshot before it.
fn log_news(old: Option<&Config>, new: &Config) {
    for skipped in new.skipped() {
        if old.is_none_or(|o| !o.skipped().contains(skipped)) {
            tracing::warn!(revision = new.revision(), "{skipped}");
        }
    }
    for missing in new.unusable() {
        if old.is_none_or(|o| !o.unusable().contains(missing)) {
            tracing::error!(
                revision = new.revision(),
                deployment = %missing.deployment_id,
                field = missing.field,
                variable = %missing.variable,
                "{missing}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use sha2::{Digest, Sha256};
    use sluice_proto::admin::v1::{Deployment, Key};
    use sluice_proto::config::v1::{Delta, Snapshot};

    use super::*;

    fn applied() -> AppliedConfig {
        AppliedConfig::with_env(Arc::new(Metrics::new()), HashMap::new())
    }

    fn key(n: u64) -> Key {
        Key {
            key_id: hex::encode(Sha256::digest(format!("sk-{n}"))),
            ..Default::default()
        }
    }

    fn snapshot(revision: i64, keys: u64) -> Snapshot {
        Snapshot {
            revision,
            keys: (0..keys).map(key).collect(),
            ..Default::default()
        }
    }

    fn delta(from: i64, to: i64, keys: Vec<Key>) -> Delta {
        Delta {
            from_revision: from,
            to_revision: to,
            upserts: Some(Snapshot {
                revision: to,
                keys,
                ..Default::default()
            }),
            removals: vec![],
        }
    }

    #[test]
    fn snapshot_then_delta() {
        let applied = applied();
        assert!(
            matches!(applied.readiness(), Readiness::NotReady { reason } if reason == WAITING_FOR_FIRST_CONFIG)
        );
        assert_eq!(
            applied.apply_snapshot(snapshot(3, 2)),
            Outcome::Applied { revision: 3 }
        );
        assert_eq!(applied.readiness(), Readiness::Ready { revision: 3 });
        assert_eq!(
            applied.apply_delta(delta(3, 5, vec![key(9)])),
            Outcome::Applied { revision: 5 }
        );
        let config = applied.current().expect("held");
        assert_eq!(config.revision(), 5);
        assert_eq!(config.key_count(), 3);
        assert!(config.key_by_plaintext("sk-9").is_some());
    }

    #[test]
    fn delta_from_the_wrong_revision_is_nacked_and_the_old_config_stays() {
        let applied = applied();
        let Outcome::Refused { revision, reason } = applied.apply_delta(delta(1, 2, vec![])) else {
            panic!("a delta with nothing held must be refused");
        };
        assert_eq!(revision, 2);
        assert!(reason.contains("holds revision 0"), "{reason}");
        applied.apply_snapshot(snapshot(3, 1));
        let before = applied.current().expect("held");
        let Outcome::Refused { revision, reason } = applied.apply_delta(delta(4, 6, vec![key(7)]))
        else {
            panic!("must be refused");
        };
        assert_eq!(revision, 6);
        assert!(
            reason.contains("revision 4") && reason.contains("revision 3"),
            "{reason}"
        );
        let after = applied.current().expect("still held");
        assert!(Arc::ptr_eq(&before, &after));
        assert!(
            applied
                .metrics
                .encode()
                .contains("sluice_config_nacks_total 2")
        );
    }

    #[test]
    fn invalid_snapshot_is_nacked_and_the_old_config_stays() {
        let applied = applied();
        let mut bad = snapshot(9, 0);
        bad.keys.push(Key {
            key_id: "sk-plaintext-by-mistake".into(),
            ..Default::default()
        });
        let Outcome::Refused { reason, .. } = applied.apply_snapshot(bad.clone()) else {
            panic!("must be refused");
        };
        assert!(!reason.contains("sk-plaintext"), "{reason}");
        // Nothing held yet: readiness says why.
        let Readiness::NotReady { reason } = applied.readiness() else {
            panic!("not ready");
        };
        assert!(reason.contains("revision 9 was refused"), "{reason}");

        applied.apply_snapshot(snapshot(3, 1));
        assert!(matches!(
            applied.apply_snapshot(bad),
            Outcome::Refused { .. }
        ));
        assert_eq!(applied.revision(), 3);
    }

    #[test]
    fn missing_variable_sets_the_metric_without_refusing() {
        let metrics = Arc::new(Metrics::new());
        let applied = AppliedConfig::with_env(Arc::clone(&metrics), HashMap::new());
        let outcome = applied.apply_snapshot(Snapshot {
            revision: 1,
            deployments: vec![
                Deployment {
                    id: "ok".into(),
                    model_name: "gpt-4o".into(),
                    api_key: "sk-literal".into(),
                    ..Default::default()
                },
                Deployment {
                    id: "broken".into(),
                    model_name: "gpt-4o".into(),
                    api_key: "os.environ/NOT_SET_ANYWHERE".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert_eq!(outcome, Outcome::Applied { revision: 1 });
        assert!(metrics.encode().contains("sluice_deployments_unusable 1"));
        let config = applied.current().expect("held");
        let group = config.model_group("gpt-4o").expect("group");
        assert_eq!(group.deployments().len(), 1);
        assert_eq!(group.deployments()[0].deployment().id, "ok");
    }

    #[test]
    fn readers_never_see_a_revision_go_backwards_or_half_a_change() {
        // Each revision r holds exactly keys 0..r: a reader that saw a
        // revision with another key count would have seen half a change.
        let applied = Arc::new(applied());
        applied.apply_snapshot(snapshot(1, 1));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let applied = Arc::clone(&applied);
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    let mut last = 0;
                    let mut reads = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let config = applied.current().expect("held from the start");
                        let revision = config.revision();
                        assert!(revision >= last, "went back from {last} to {revision}");
                        assert_eq!(config.key_count() as i64, revision, "half a change");
                        last = revision;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for r in 1..500 {
            let outcome = applied.apply_delta(delta(r, r + 1, vec![key(r as u64)]));
            assert_eq!(outcome, Outcome::Applied { revision: r + 1 });
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.join().expect("reader") > 0);
        }
        assert_eq!(applied.revision(), 500);
    }
}
