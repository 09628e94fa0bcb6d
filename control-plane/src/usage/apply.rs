//! Counting a data plane's usage report: one store transaction that moves
//! the data plane's journal mark and every document the report adds to, so
//! that a report is counted exactly once whatever is resent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use prost::Message;
use prost::bytes::Bytes;
use sluice_proto::admin::v1::{Key, StoredJournalMark, StoredUsageDay, StoredUsageTotals};
use sluice_proto::config::v1::{Kind, UsageAck, UsageReport, UsageTotal};

use super::ledger::{self, Decision, Docs, Malformed, Touched};
use super::paths::{Scope, ScopeKind, day_key, journal_key, totals_key};
use crate::catalog::back_off;
use crate::distribution::Hub;
use crate::distribution::objects::Object;
use crate::metrics::Metrics;
use crate::store::{KeyValue, Store, StoreError, Txn};

/// The most writes one report may need (its documents and the mark). etcd
/// takes at most 128 operations of each kind per transaction
/// ([`crate::store::MAX_TXN_OPS`]) and this transaction has one compare per
/// write; the data plane caps a report at 30 scopes (at most 30 totals and
/// 60 day documents when a report spans midnight, plus the mark), well under
/// it. A report over it is refused ([`UsageError::TooLarge`]), not
/// acknowledged: the data plane cannot make progress with it, which its log
/// and this replica's say.
pub const MAX_PUTS: usize = 120;

/// How long an apply waits for this replica's configuration to catch up
/// with the store when a report names a key, team or organization it does
/// not know yet (created a moment ago through another replica).
const CONFIG_CATCH_UP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage report refused: {0}")]
    Malformed(#[from] Malformed),
    #[error(
        "usage report refused: it needs {puts} writes, more than the {MAX_PUTS} one transaction may \
         carry; report fewer scopes per batch"
    )]
    TooLarge { puts: usize },
    #[error("{key} is stored corrupt: {source}")]
    Corrupt {
        key: String,
        source: prost::DecodeError,
    },
    #[error("counting usage kept conflicting with other writers ({attempts} attempts)")]
    KeptConflicting { attempts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counts reports into the store. Cheap to clone.
#[derive(Clone)]
pub struct Usage {
    store: Arc<dyn Store>,
    hub: Hub,
    metrics: Arc<Metrics>,
}

fn decode<M: Message + Default>(kv: Option<KeyValue>) -> Result<(M, i64), UsageError> {
    match kv {
        None => Ok((M::default(), 0)),
        Some(kv) => M::decode(kv.value.as_slice())
            .map(|m| (m, kv.mod_revision))
            .map_err(|source| UsageError::Corrupt {
                key: kv.key.clone(),
                source,
            }),
    }
}

/// A scope's budget_duration in a configuration; `None` when it has no such
/// object (model groups have no budget: `Some("")`).
pub fn configured_duration(
    published: &crate::distribution::hub::Published,
    scope: &Scope,
) -> Option<String> {
    let object = match scope.kind {
        ScopeKind::ModelGroup => return Some(String::new()),
        ScopeKind::Key => published.get(Kind::Key, &scope.id),
        ScopeKind::Team => published.get(Kind::Team, &scope.id),
        ScopeKind::Organization => published.get(Kind::Organization, &scope.id),
    }?;
    match object.as_ref() {
        Object::Key(bytes) => Key::decode(Bytes::clone(bytes))
            .ok()
            .map(|k| k.budget_duration),
        Object::Team(t) => Some(t.budget_duration.clone()),
        Object::Organization(o) => Some(o.budget_duration.clone()),
        _ => None,
    }
}

impl Usage {
    pub fn new(store: Arc<dyn Store>, hub: Hub, metrics: Arc<Metrics>) -> Self {
        Usage {
            store,
            hub,
            metrics,
        }
    }

    /// Counts `report` from the data plane `node_id` unless it is counted
    /// already, and answers how far its journal is counted with the totals
    /// of the scopes it names.
    ///
    /// Against `/sluice/usage/journals/{node_id}`: a report of another
    /// journal, or one that starts where the mark is, is counted, and the
    /// mark moved to its `to_record`, in one transaction guarded by the
    /// `mod_revision` of every document read (absent ones: still absent),
    /// re-read and retried on conflict (another replica counting another
    /// data plane's report into the same team). A report that starts after
    /// the mark (records lost on the data plane) is counted too, with a
    /// warning. A repeat counts nothing and answers the mark with the
    /// current totals (revision 0); an overlap counts nothing and answers
    /// the mark, from which the data plane reports again.
    ///
    /// One data plane has one journal at a time: a report of a journal
    /// other than the mark's starts that journal (what came before it is
    /// not looked at again).
    pub async fn apply(&self, node_id: &str, report: &UsageReport) -> Result<UsageAck, UsageError> {
        let started = Instant::now();
        let result = self.apply_timed(node_id, report).await;
        self.metrics
            .usage_apply_seconds
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.usage_batches_failed.inc();
        }
        result
    }

    async fn apply_timed(
        &self,
        node_id: &str,
        report: &UsageReport,
    ) -> Result<UsageAck, UsageError> {
        ledger::check(report)?;
        let touched = Touched::of(&report.entries);
        if touched.puts() > MAX_PUTS {
            return Err(UsageError::TooLarge {
                puts: touched.puts(),
            });
        }
        let durations = self.durations(&touched).await;
        let mark_key = journal_key(node_id);
        let mut conflicts = 0u32;
        loop {
            let (mark, mark_revision) =
                decode::<StoredJournalMark>(self.store.get(&mark_key).await?)?;
            let known = (mark_revision != 0).then_some(&mark);
            let gap_after = match ledger::decide(known, report) {
                Decision::Repeat { applied_through } => {
                    self.metrics.usage_batch_repeats.inc();
                    let totals = self.read_totals(&touched).await?;
                    return Ok(ack(report, applied_through, 0, totals));
                }
                Decision::Overlap { applied_through } => {
                    self.metrics.usage_batch_overlaps.inc();
                    tracing::info!(%node_id, journal = %report.journal_id, from = report.from_record,
                        to = report.to_record, applied_through,
                        "usage report overlaps what is counted: asking for it again from the mark");
                    return Ok(ack(report, applied_through, 0, Vec::new()));
                }
                Decision::Apply { gap_after, .. } => gap_after,
            };
            let (mut docs, revisions) = self.read_docs(&touched).await?;
            ledger::fold(&report.entries, &mut docs, |s| {
                durations.get(s).and_then(|d| d.as_deref())
            });
            let mut txn = Txn::new().when_mod_revision(mark_key.clone(), mark_revision);
            let new_mark = StoredJournalMark {
                journal_id: report.journal_id.clone(),
                applied_through: report.to_record,
            };
            txn = txn.put(mark_key.clone(), new_mark.encode_to_vec());
            for (scope, doc) in &docs.totals {
                let key = totals_key(scope);
                let rev = revisions.get(&key).copied().unwrap_or(0);
                txn = txn
                    .when_mod_revision(key.clone(), rev)
                    .put(key, doc.encode_to_vec());
            }
            for ((scope, day), doc) in &docs.days {
                let key = day_key(scope, day);
                let rev = revisions.get(&key).copied().unwrap_or(0);
                txn = txn
                    .when_mod_revision(key.clone(), rev)
                    .put(key, doc.encode_to_vec());
            }
            let outcome = self.store.txn(txn).await?;
            if !outcome.succeeded {
                self.metrics.usage_apply_conflicts.inc();
                if let Err(gave_up) = back_off(conflicts).await {
                    return Err(UsageError::KeptConflicting {
                        attempts: gave_up.attempts,
                    });
                }
                conflicts += 1;
                continue;
            }
            if let Some(applied_through) = gap_after {
                self.metrics.usage_batch_gaps.inc();
                tracing::warn!(%node_id, journal = %report.journal_id, applied_through,
                    from = report.from_record, lost = report.from_record - applied_through,
                    "usage report starts after what was counted: the records between were lost \
                     on the data plane; counting what arrived");
            }
            self.metrics.usage_batches_applied.inc();
            self.metrics
                .usage_entries
                .inc_by(report.entries.len() as u64);
            let totals = docs
                .totals
                .iter()
                .map(|(scope, doc)| ledger::total_of(scope, doc, outcome.revision))
                .collect();
            return Ok(ack(report, report.to_record, outcome.revision, totals));
        }
    }

    /// Each key, team and organization's budget_duration in this replica's
    /// configuration, after waiting (briefly, once) for it to catch up with
    /// the store when one is unknown to it. Still unknown: `None` (the
    /// documents keep their own).
    async fn durations(&self, touched: &Touched) -> BTreeMap<Scope, Option<String>> {
        let look_up = |published: &crate::distribution::hub::Published| {
            touched
                .scopes
                .iter()
                .map(|s| (s.clone(), configured_duration(published, s)))
                .collect::<BTreeMap<_, _>>()
        };
        let durations = look_up(&self.hub.current());
        if durations.values().all(Option::is_some) {
            return durations;
        }
        if let Ok(revision) = self.store.revision().await {
            self.hub.wait_for(revision, CONFIG_CATCH_UP).await;
        }
        look_up(&self.hub.current())
    }

    /// Every document the report touches, read concurrently, with their
    /// mod_revisions by store key (absent: not in the map).
    async fn read_docs(
        &self,
        touched: &Touched,
    ) -> Result<(Docs, BTreeMap<String, i64>), UsageError> {
        let totals = try_join_all(
            touched
                .scopes
                .iter()
                .map(|s| self.store.get_owned(totals_key(s))),
        );
        let days = try_join_all(
            touched
                .days
                .iter()
                .map(|(s, d)| self.store.get_owned(day_key(s, d))),
        );
        let (totals, days) = tokio::try_join!(totals, days)?;
        let mut docs = Docs::default();
        let mut revisions = BTreeMap::new();
        for (scope, kv) in touched.scopes.iter().zip(totals) {
            let (doc, rev) = decode::<StoredUsageTotals>(kv)?;
            if rev != 0 {
                revisions.insert(totals_key(scope), rev);
            }
            docs.totals.insert(scope.clone(), doc);
        }
        for ((scope, day), kv) in touched.days.iter().zip(days) {
            let (doc, rev) = decode::<StoredUsageDay>(kv)?;
            if rev != 0 {
                revisions.insert(day_key(scope, day), rev);
            }
            docs.days.insert((scope.clone(), day.clone()), doc);
        }
        Ok((docs, revisions))
    }

    /// The stored totals of the scopes a report names (those that have any).
    async fn read_totals(&self, touched: &Touched) -> Result<Vec<UsageTotal>, UsageError> {
        let kvs = try_join_all(
            touched
                .scopes
                .iter()
                .map(|s| self.store.get_owned(totals_key(s))),
        )
        .await?;
        let mut out = Vec::new();
        for (scope, kv) in touched.scopes.iter().zip(kvs) {
            if kv.is_some() {
                let (doc, rev) = decode::<StoredUsageTotals>(kv)?;
                out.push(ledger::total_of(scope, &doc, rev));
            }
        }
        Ok(out)
    }
}

fn ack(
    report: &UsageReport,
    applied_through: u64,
    revision: i64,
    totals: Vec<UsageTotal>,
) -> UsageAck {
    UsageAck {
        journal_id: report.journal_id.clone(),
        applied_through,
        revision,
        totals,
    }
}

/// `Store::get` with an owned key, for futures that outlive the loop that
/// makes the key.
trait GetOwned {
    fn get_owned(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send;
}

impl GetOwned for Arc<dyn Store> {
    fn get_owned(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send {
        let store = self.clone();
        async move { store.get(&key).await }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_proto::admin::v1::Team;
    use sluice_proto::config::v1::UsageEntry;

    use super::*;
    use crate::resources::{encode, key_of};
    use crate::store::embedded::EmbeddedStore;
    use crate::usage::paths::days_prefix;
    use crate::usage::window::day_of;

    const T: i64 = 20_000 * 86_400 + 3600;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        usage: Usage,
    }

    /// A store with team `t` (a `1d` budget), and a hub that has loaded it.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let team = Team {
            team_id: "t".into(),
            budget_duration: "1d".into(),
            ..Default::default()
        };
        let o = store
            .txn(Txn::new().put(key_of::<Team>("t"), encode(&team)))
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::start(store.clone(), metrics.clone());
        assert!(hub.wait_for(o.revision, Duration::from_secs(5)).await);
        Fixture {
            _dir: dir,
            usage: Usage::new(store.clone(), hub, metrics),
            store,
        }
    }

    fn key(i: usize) -> String {
        format!("{i:064x}")
    }

    fn entry(key: &str, team: &str, group: &str, at_s: i64, spend: i64) -> UsageEntry {
        UsageEntry {
            key_id: key.into(),
            team_id: team.into(),
            model_group: group.into(),
            deployment_id: "d".into(),
            at_s,
            requests: 1,
            spend,
            credits_used: 1,
            ..Default::default()
        }
    }

    fn report(journal: &str, from: u64, to: u64, entries: Vec<UsageEntry>) -> UsageReport {
        UsageReport {
            journal_id: journal.into(),
            from_record: from,
            to_record: to,
            entries,
        }
    }

    impl Fixture {
        async fn totals(&self, kind: ScopeKind, id: &str) -> StoredUsageTotals {
            let kv = self
                .store
                .get(&totals_key(&Scope::new(kind, id)))
                .await
                .unwrap();
            decode::<StoredUsageTotals>(kv).unwrap().0
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_resent_report_counts_once() {
        let f = fixture().await;
        let r = report("j", 0, 3, vec![entry(&key(1), "t", "openai/*", T, 100)]);
        let first = f.usage.apply("dp", &r).await.unwrap();
        assert_eq!(first.applied_through, 3);
        assert!(first.revision > 0);
        assert_eq!(first.totals.len(), 3, "key, team, model group");
        let again = f.usage.apply("dp", &r).await.unwrap();
        assert_eq!((again.applied_through, again.revision), (3, 0));
        // The repeat answers the current totals of the scopes it names.
        assert_eq!(again.totals, first.totals);
        let team = f.totals(ScopeKind::Team, "t").await;
        assert_eq!(team.lifetime.unwrap().spend, 100);
        assert_eq!(team.window.unwrap().spend, 100);
        assert_eq!(team.budget_duration, "1d");
        assert_eq!(team.window_start_s, T - 3600);
        let group = f.totals(ScopeKind::ModelGroup, "openai/*").await;
        assert_eq!(group.window_by_model_group["d"].spend, 100);
        let day = f
            .store
            .get(&day_key(&Scope::new(ScopeKind::Key, key(1)), &day_of(T)))
            .await
            .unwrap();
        let day = decode::<StoredUsageDay>(day).unwrap().0;
        assert_eq!(day.by_model_group["openai/*"].requests, 1);
        // The next report of the journal counts.
        let next = report("j", 3, 5, vec![entry(&key(1), "t", "openai/*", T, 1)]);
        assert_eq!(f.usage.apply("dp", &next).await.unwrap().applied_through, 5);
        assert_eq!(
            f.totals(ScopeKind::Team, "t").await.lifetime.unwrap().spend,
            101
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_overlap_counts_nothing_and_answers_the_mark() {
        let f = fixture().await;
        let e = || vec![entry(&key(1), "t", "g", T, 10)];
        f.usage.apply("dp", &report("j", 0, 10, e())).await.unwrap();
        let ack = f.usage.apply("dp", &report("j", 5, 15, e())).await.unwrap();
        assert_eq!((ack.applied_through, ack.revision), (10, 0));
        assert!(ack.totals.is_empty());
        assert_eq!(
            f.totals(ScopeKind::Team, "t").await.lifetime.unwrap().spend,
            10
        );
        // Resent from the mark, it counts.
        let ack = f
            .usage
            .apply("dp", &report("j", 10, 15, e()))
            .await
            .unwrap();
        assert_eq!(ack.applied_through, 15);
        assert_eq!(
            f.totals(ScopeKind::Team, "t").await.lifetime.unwrap().spend,
            20
        );
        // A gap is counted anyway; a new journal starts afresh.
        let ack = f
            .usage
            .apply("dp", &report("j", 20, 25, e()))
            .await
            .unwrap();
        assert_eq!(ack.applied_through, 25);
        let ack = f.usage.apply("dp", &report("j2", 0, 1, e())).await.unwrap();
        assert_eq!(ack.applied_through, 1);
        assert_eq!(
            f.totals(ScopeKind::Team, "t").await.lifetime.unwrap().spend,
            40
        );
        // Each data plane has its own mark.
        let ack = f
            .usage
            .apply("dp-2", &report("j", 0, 10, e()))
            .await
            .unwrap();
        assert!(ack.revision > 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_reports_into_one_team_all_count() {
        let f = fixture().await;
        let n = 8;
        let mut tasks = Vec::new();
        for i in 0..n {
            let usage = f.usage.clone();
            tasks.push(tokio::spawn(async move {
                for batch in 0..5u64 {
                    let r = report("j", batch, batch + 1, vec![entry(&key(i), "t", "g", T, 1)]);
                    usage.apply(&format!("dp-{i}"), &r).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let team = f.totals(ScopeKind::Team, "t").await;
        assert_eq!(team.lifetime.unwrap().spend, n as i64 * 5);
        assert_eq!(team.window.unwrap().requests, n as u64 * 5);
        let group = f.totals(ScopeKind::ModelGroup, "g").await;
        assert_eq!(group.lifetime.unwrap().requests, n as u64 * 5);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_thirty_scope_report_fits_one_transaction_and_more_is_refused() {
        let f = fixture().await;
        // 28 keys, their team and one model group: 30 scopes, across
        // midnight so every scope has two day documents (91 writes).
        let entries: Vec<_> = (0..28)
            .flat_map(|i| {
                [
                    entry(&key(i), "t", "g", T, 1),
                    entry(&key(i), "t", "g", T + 86_400, 1),
                ]
            })
            .collect();
        let r = report("j", 0, 1, entries);
        assert_eq!(Touched::of(&r.entries).scopes.len(), 30);
        assert_eq!(Touched::of(&r.entries).puts(), 91);
        let ack = f.usage.apply("dp", &r).await.unwrap();
        assert_eq!(ack.totals.len(), 30);
        assert_eq!(
            f.totals(ScopeKind::Team, "t").await.lifetime.unwrap().spend,
            56
        );
        let days = f
            .store
            .range(&days_prefix(&Scope::new(ScopeKind::Team, "t")))
            .await
            .unwrap();
        assert_eq!(days.kvs.len(), 2);

        let entries: Vec<_> = (0..60).map(|i| entry(&key(i), "", "g", T, 1)).collect();
        let too_many = report("j", 1, 2, entries);
        assert_eq!(Touched::of(&too_many.entries).puts(), 123);
        let err = f.usage.apply("dp", &too_many).await.unwrap_err();
        assert!(matches!(err, UsageError::TooLarge { puts: 123 }), "{err}");
        // Nothing moved: the data plane's mark is where it was.
        let r = report("j", 1, 2, vec![entry(&key(1), "", "g", T, 1)]);
        assert_eq!(f.usage.apply("dp", &r).await.unwrap().applied_through, 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn malformed_reports_are_refused() {
        let f = fixture().await;
        let err = f
            .usage
            .apply("dp", &report("j", 0, 1, vec![entry("", "t", "g", T, 1)]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("entry 0 has no key_id"), "{err}");
    }
}
