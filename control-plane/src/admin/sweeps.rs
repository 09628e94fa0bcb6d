//! Resumable fan-out deletes.
//!
//! Deleting an access group or a team removes the parent at once and then
//! cleans its holders up in many transactions (`Catalog::sweep`). So that
//! the clean-up finishes whatever fails in between (etcd restarted, a
//! deadline, this replica killed, the caller gone), the delete writes a
//! [`Pending`] record under [`PREFIX`] in the same transaction as the
//! parent's delete, and the record is deleted only once its sweep is done.
//! A record is finished by:
//!
//! - the call itself, before it answers;
//! - a retry of the call, which finds the parent gone but the record there;
//! - this replica's [`Sweeper`], when the call fails or is dropped (it is
//!   handed over) and whenever the sweeper re-lists: at start, and after its
//!   watch of [`PREFIX`] breaks (the store went away and came back);
//! - any other replica's sweeper, which sees the record on its watch and
//!   finishes it if it is still there after [`TAKE_OVER_AFTER`] (the writer
//!   was killed mid-sweep).
//!
//! Every sweep is idempotent, so two finishing one record at once only
//! waste work.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::error::AdminResult;
use crate::store::{EventKind, WatchMessage};

/// Where pending sweeps are recorded: under [`ROOT`](crate::resources::ROOT), so that an etcd user
/// limited to Sluice's prefixes may write them, and in a directory no
/// resource uses, so that distribution ignores them.
pub const PREFIX: &str = "/sluice/sweeps/";

/// How long another replica's sweep is left to its writer before a replica
/// that saw it on its watch finishes it: a 5,000-holder sweep takes seconds.
pub const TAKE_OVER_AFTER: Duration = Duration::from_secs(30);

/// How long the sweeper waits after a failure, at most.
const MAX_BACK_OFF: Duration = Duration::from_secs(2);

/// A clean-up owed after a delete, named by its store key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pending {
    /// Remove the access group `name`, incarnation `uid`, from every team,
    /// key, organization and deployment. Per incarnation, so that a group
    /// created again under the name keeps its own holders.
    AccessGroup { name: String, uid: String },
    /// Delete every key of the team.
    Team { team_id: String },
}

impl Pending {
    /// The record's store key: `/sluice/sweeps/access_groups/{name}/{uid}`,
    /// `/sluice/sweeps/teams/{team_id}`. Names and uids have no `/`.
    pub fn key(&self) -> String {
        match self {
            Pending::AccessGroup { name, uid } => format!("{PREFIX}access_groups/{name}/{uid}"),
            Pending::Team { team_id } => format!("{PREFIX}teams/{team_id}"),
        }
    }

    /// The prefix of every pending sweep of access group `name`, whatever
    /// its incarnation.
    pub fn access_group_prefix(name: &str) -> String {
        format!("{PREFIX}access_groups/{name}/")
    }

    pub fn parse(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(PREFIX)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts[..] {
            ["access_groups", name, uid] if !name.is_empty() && !uid.is_empty() => {
                Some(Pending::AccessGroup {
                    name: name.into(),
                    uid: uid.into(),
                })
            }
            ["teams", team_id] if !team_id.is_empty() => Some(Pending::Team {
                team_id: team_id.into(),
            }),
            _ => None,
        }
    }

    /// The stored value: what the record is for, for whoever reads the
    /// store with etcdctl. Everything the sweep needs is in the key.
    pub fn value(&self) -> Vec<u8> {
        match self {
            Pending::AccessGroup { name, uid } => {
                format!("remove access group {name} (uid {uid}) from its holders")
            }
            Pending::Team { team_id } => format!("delete the keys of team {team_id}"),
        }
        .into_bytes()
    }
}

/// What one finished sweep changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub teams: u32,
    pub keys: u32,
    pub organizations: u32,
    pub deployments: u32,
    /// The last revision written (0 when nothing was).
    pub revision: i64,
}

impl Swept {
    pub fn add(&mut self, other: Swept) {
        self.teams += other.teams;
        self.keys += other.keys;
        self.organizations += other.organizations;
        self.deployments += other.deployments;
        self.revision = self.revision.max(other.revision);
    }
}

/// Runs one record's sweep to the end and deletes the record.
async fn finish(catalog: &Catalog, pending: &Pending) -> AdminResult<Swept> {
    let mut swept = match pending {
        Pending::AccessGroup { name, uid } => {
            super::access_groups::sweep(catalog, name, uid).await?
        }
        Pending::Team { team_id } => super::teams::sweep(catalog, team_id).await?,
    };
    // Nothing can add a holder back (a grant or a key needs its parent to
    // exist, checked in its transaction), so the record can go.
    let o = catalog
        .commit(crate::store::Txn::new().delete(pending.key()))
        .await?;
    swept.revision = swept.revision.max(o.revision);
    Ok(swept)
}

/// This replica's sweeps: which are running here, and the background task
/// that finishes the rest.
#[derive(Clone)]
pub struct Sweeper {
    catalog: Catalog,
    running: Arc<Mutex<HashSet<Pending>>>,
    handed_over: mpsc::UnboundedSender<Pending>,
}

/// Marks a sweep as running here; when dropped before [`Running::done`]
/// (the sweep failed, or the call's future was dropped), hands the sweep to
/// the background task.
struct Running<'a> {
    sweeper: &'a Sweeper,
    pending: Pending,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.sweeper.running.lock() {
            running.remove(&self.pending);
        }
        if !self.done {
            // The task outlives every call; a send fails only at shutdown.
            let _ = self.sweeper.handed_over.send(self.pending.clone());
        }
    }
}

impl Sweeper {
    /// Starts the background task on the runtime: it finishes every pending
    /// sweep it finds now, and then those it is handed or sees on its watch.
    pub fn start(catalog: Catalog) -> Self {
        let (handed_over, rx) = mpsc::unbounded_channel();
        let sweeper = Self {
            catalog,
            running: Arc::default(),
            handed_over,
        };
        tokio::spawn(sweeper.clone().run(rx));
        sweeper
    }

    /// Finishes `pending` now, in the caller's task (the call that wrote it,
    /// or its retry). On failure the background task takes it over. When it
    /// runs here already (a retry while the background task works on it),
    /// it runs twice: the caller waits for the end rather than a promise.
    pub async fn finish(&self, pending: Pending) -> AdminResult<Swept> {
        let Some(mut running) = self.claim(pending.clone()) else {
            return finish(&self.catalog, &pending).await;
        };
        let swept = finish(&self.catalog, &running.pending).await?;
        running.done = true;
        Ok(swept)
    }

    /// Every pending sweep of access group `name`, any incarnation.
    pub async fn pending_of_group(&self, name: &str) -> AdminResult<Vec<Pending>> {
        let range = self
            .catalog
            .store()
            .range(&Pending::access_group_prefix(name))
            .await?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|kv| Pending::parse(&kv.key))
            .collect())
    }

    /// Whether team `team_id`'s keys are still being deleted; with the
    /// record's mod_revision (0: not) for a transaction to compare.
    pub async fn pending_of_team(&self, team_id: &str) -> AdminResult<i64> {
        let key = Pending::Team {
            team_id: team_id.into(),
        }
        .key();
        Ok(self
            .catalog
            .store()
            .get(&key)
            .await?
            .map_or(0, |kv| kv.mod_revision))
    }

    fn claim(&self, pending: Pending) -> Option<Running<'_>> {
        let mut running = self.running.lock().ok()?;
        if !running.insert(pending.clone()) {
            return None;
        }
        Some(Running {
            sweeper: self,
            pending,
            done: false,
        })
    }

    /// Finishes a record in the background task, unless it runs here
    /// already (its runner hands it over if it fails).
    async fn finish_here(&self, pending: Pending) -> AdminResult<()> {
        let Some(mut running) = self.claim(pending) else {
            return Ok(());
        };
        match finish(&self.catalog, &running.pending).await {
            Ok(swept) => {
                running.done = true;
                tracing::info!(sweep = ?running.pending, ?swept, "finished a pending sweep");
                Ok(())
            }
            Err(e) => {
                // Not handed over again: the loop below retries it itself.
                running.done = true;
                Err(e)
            }
        }
    }

    /// Lists every record and finishes each; returns the revision listed at.
    async fn finish_all(&self) -> AdminResult<i64> {
        let range = self.catalog.store().range(PREFIX).await?;
        for kv in &range.kvs {
            match Pending::parse(&kv.key) {
                Some(pending) => self.finish_here(pending).await?,
                None => tracing::warn!(key = %kv.key, "ignoring an unknown pending-sweep record"),
            }
        }
        Ok(range.revision)
    }

    async fn run(self, mut handed_over: mpsc::UnboundedReceiver<Pending>) {
        let mut failures = 0u32;
        loop {
            let from = match self.finish_all().await {
                Ok(revision) => {
                    failures = 0;
                    revision + 1
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pending sweeps not finished yet; trying again");
                    failures += 1;
                    tokio::time::sleep(back_off(failures)).await;
                    continue;
                }
            };
            if let Err(e) = self.follow(from, &mut handed_over).await {
                tracing::warn!(error = %e, "pending-sweep watch ended; listing again");
                failures += 1;
                tokio::time::sleep(back_off(failures)).await;
            }
        }
    }

    /// Watches [`PREFIX`] from `from`. Returns to be listed again when a
    /// sweep is handed over (finished by [`Sweeper::finish_all`]) or the
    /// watch ends.
    async fn follow(
        &self,
        from: i64,
        handed_over: &mut mpsc::UnboundedReceiver<Pending>,
    ) -> AdminResult<()> {
        let mut watch = self.catalog.store().watch(PREFIX, from).await?;
        // Records seen written, by when they are taken over.
        let mut due: BTreeMap<Instant, Vec<Pending>> = BTreeMap::new();
        loop {
            let next_due = due.keys().next().copied();
            tokio::select! {
                message = watch.next() => match message {
                    Some(Ok(WatchMessage::Events { events, .. })) => {
                        for e in events {
                            if e.kind == EventKind::Put
                                && let Some(pending) = Pending::parse(&e.kv.key)
                            {
                                due.entry(Instant::now() + TAKE_OVER_AFTER)
                                    .or_default()
                                    .push(pending);
                            }
                        }
                    }
                    Some(Ok(WatchMessage::Compacted { .. })) | None => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                },
                Some(_) = handed_over.recv() => {
                    // A failed runner: give the store a moment, then re-list.
                    tokio::time::sleep(back_off(1)).await;
                    return Ok(());
                }
                () = sleep_until(next_due) => {
                    if let Some((_, records)) = due.pop_first() {
                        for pending in records {
                            let still_there =
                                self.catalog.store().get(&pending.key()).await?.is_some();
                            if still_there {
                                self.finish_here(pending).await?;
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn back_off(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(5))).min(MAX_BACK_OFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_named_by_their_keys() {
        let cases = [
            (
                Pending::AccessGroup {
                    name: "bulk".into(),
                    uid: "u1".into(),
                },
                "/sluice/sweeps/access_groups/bulk/u1",
            ),
            (
                Pending::Team {
                    team_id: "t1".into(),
                },
                "/sluice/sweeps/teams/t1",
            ),
        ];
        for (pending, key) in cases {
            assert_eq!(pending.key(), key);
            assert_eq!(Pending::parse(key), Some(pending));
        }
        assert_eq!(Pending::parse("/sluice/sweeps/teams/"), None);
        assert_eq!(Pending::parse("/sluice/sweeps/access_groups/bulk"), None);
        assert_eq!(Pending::parse("/sluice/teams/t1"), None);
        assert!(Pending::access_group_prefix("bulk").starts_with(PREFIX));
        assert!(PREFIX.starts_with(crate::resources::ROOT));
    }

    #[test]
    fn records_are_no_distributed_object() {
        let key = Pending::Team {
            team_id: "t1".into(),
        }
        .key();
        assert_eq!(crate::distribution::objects::address_of(&key), None);
    }

    use std::sync::Arc;

    use sluice_proto::admin::v1::{Key, Team};

    use crate::catalog::put_if;
    use crate::store::Txn;
    use crate::store::embedded::EmbeddedStore;

    fn team(id: &str, bound_to: &str) -> Team {
        Team {
            team_id: id.into(),
            access_groups: vec!["bulk".into()],
            access_group_uids: [("bulk".to_string(), bound_to.to_string())].into(),
            ..Default::default()
        }
    }

    async fn wait_until_gone(catalog: &Catalog, pending: &Pending) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while catalog.store().get(&pending.key()).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{pending:?} never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What a control plane killed mid-sweep leaves: a record, holders not
    /// yet swept. A replica starting on that store finishes it, with no call.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_sweeper_at_start_finishes_what_a_dead_replica_left() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
        let old = Pending::AccessGroup {
            name: "bulk".into(),
            uid: "old".into(),
        };
        let gone_team = Pending::Team {
            team_id: "t-gone".into(),
        };
        let key = |id: &str, team_id: &str| Key {
            key_id: id.into(),
            team_id: team_id.into(),
            models: vec!["bulk".into()],
            access_group_uids: [("bulk".to_string(), "old".to_string())].into(),
            ..Default::default()
        };
        let mut txn = Txn::new();
        // t-new holds a group created again under the name: it keeps it.
        for t in [team("t-old", "old"), team("t-new", "new")] {
            txn = put_if(txn, &t, 0);
        }
        for k in [key("k-gone", "t-gone"), key("k-kept", "")] {
            txn = put_if(txn, &k, 0);
        }
        for p in [&old, &gone_team] {
            txn = txn.put(p.key(), p.value());
        }
        assert!(catalog.commit(txn).await.unwrap().succeeded);

        let _sweeper = Sweeper::start(catalog.clone());
        wait_until_gone(&catalog, &old).await;
        wait_until_gone(&catalog, &gone_team).await;

        let held = |t: &Team| t.access_groups.clone();
        let t_old = catalog.require::<Team>("t-old").await.unwrap().value;
        assert_eq!(held(&t_old), Vec::<String>::new());
        assert!(t_old.access_group_uids.is_empty());
        let t_new = catalog.require::<Team>("t-new").await.unwrap().value;
        assert_eq!(held(&t_new), vec!["bulk".to_string()]);
        assert!(catalog.get::<Key>("k-gone").await.unwrap().is_none());
        let kept = catalog.require::<Key>("k-kept").await.unwrap().value;
        // Emptied, a key's list would widen to its team's: it means "none".
        assert_eq!(kept.models, vec![super::super::access_groups::NO_MODELS]);
        assert!(kept.access_group_uids.is_empty());
    }
}
