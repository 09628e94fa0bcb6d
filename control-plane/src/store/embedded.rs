//! etcd's semantics in one local database file, for the quick start and
//! single-node use (`sluice-control-plane` without `--etcd`).
//!
//! The file is `{dir}/sluice.redb` (redb: copy-on-write B-trees, every commit
//! fsynced), with four tables:
//! - `meta`: the current revision and the compacted revision;
//! - `kv`: key → (create_revision, mod_revision, version, value);
//! - `history`: revision → the events committed at it, which watches replay;
//! - `leases`: key → when it expires (unix ms), for keys put with a TTL.
//!
//! **Expiring keys** ([`Store::put_with_ttl`]): the expiry is written in the
//! same transaction as the put (and removed by any later write of the key),
//! so it survives a restart. A reaper task deletes expired keys through the
//! ordinary commit path, so watches see the deletes like any other. It scans
//! the `leases` table on every wake: the table holds only keys put with a TTL
//! (deployments in cooldown), never the configuration. It starts with the
//! store when a Tokio runtime is at hand, else with the first TTL put, and
//! holds the database only weakly, so dropping the store still closes it.
//!
//! Like etcd, an empty store is at revision 1 and the first write commits at 2.
//!
//! **History is bounded**: besides explicit [`Store::compact`], every commit
//! compacts history older than the last [`HISTORY_REVISIONS`] revisions
//! ([`EmbeddedOptions::history_revisions`]; etcd leaves this to
//! `--auto-compaction-*`, but a store nobody operates must not grow without
//! bound). A watcher more than that far behind gets [`WatchMessage::Compacted`]
//! and re-lists, exactly as on etcd.
//!
//! **Watches** subscribe to a broadcast of each commit before they read history,
//! and track the next revision they owe their reader: a broadcast revision they
//! already read from history is skipped, and a gap (a lagging receiver, or any
//! surprise) sends them back to the history table, so nothing is lost or
//! repeated. A watch is a plain stream with no task behind it: dropping it
//! frees everything.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, broadcast};

use super::{
    Compare, Event, EventKind, KeyValue, MAX_TXN_OPS, Op, Range, Store, StoreError, Txn,
    TxnOutcome, WatchMessage, WatchStream, check_watch_start,
};

/// How many revisions of history the store keeps for watches by default;
/// older ones are compacted on every commit.
pub const HISTORY_REVISIONS: i64 = 10_000;

/// The database file inside the data directory.
pub const FILE_NAME: &str = "sluice.redb";

/// Commits buffered for live watchers; a watcher further behind re-reads
/// the history table instead.
const LIVE_BUFFER: usize = 1024;

/// Revisions a catching-up watcher reads per history transaction, which bounds
/// its memory and how long it holds a read snapshot.
const HISTORY_BATCH: usize = 1000;

const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const KV: TableDefinition<&str, StoredKv> = TableDefinition::new("kv");
const HISTORY: TableDefinition<i64, Vec<StoredEvent>> = TableDefinition::new("history");
const LEASES: TableDefinition<&str, i64> = TableDefinition::new("leases");

/// Pause after the reaper fails to read or write the store.
const REAPER_RETRY: Duration = Duration::from_secs(1);

/// (create_revision, mod_revision, version, value)
type StoredKv = (i64, i64, i64, &'static [u8]);
/// (is_delete, key, value, create_revision, version); the mod revision is the
/// history row's revision.
type StoredEvent = (bool, &'static str, &'static [u8], i64, i64);

const REVISION: &str = "revision";
const COMPACT_REVISION: &str = "compact_revision";

/// etcd's revision of an empty store.
const INITIAL_REVISION: i64 = 1;

/// One commit, as broadcast to live watchers.
#[derive(Debug)]
struct Committed {
    revision: i64,
    events: Vec<Event>,
}

/// Tuning of an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions of history kept for watches (at least 1).
    pub history_revisions: i64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            history_revisions: HISTORY_REVISIONS,
        }
    }
}

/// See the module documentation.
pub struct EmbeddedStore {
    db: Arc<Database>,
    history_revisions: i64,
    /// Held from the start of a write transaction until its commit is
    /// broadcast, so live watchers receive revisions in order.
    write_lock: Arc<Mutex<()>>,
    live: broadcast::Sender<Arc<Committed>>,
    reaper: Arc<ReaperControl>,
}

/// How the store and its reaper task talk.
#[derive(Default)]
struct ReaperControl {
    started: AtomicBool,
    /// Set when the store is dropped: the reaper ends.
    closed: AtomicBool,
    /// Woken by a TTL put (which may expire before what the reaper waits
    /// for) and by the store's drop.
    wake: Notify,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.reaper.closed.store(true, Ordering::SeqCst);
        self.reaper.wake.notify_one();
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store under `dir`, creating `dir` if needed.
    ///
    /// Blocks on file I/O: call it at startup, or from a blocking context.
    /// A second open of the same directory, from this process or another,
    /// fails until the first store and its watch streams are dropped.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// [`Self::open`] with non-default options.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        if options.history_revisions < 1 {
            return Err(StoreError::Other(format!(
                "history_revisions must be at least 1, not {}",
                options.history_revisions
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Other(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| {
            StoreError::Other(format!(
                "cannot open embedded store {}: {e}",
                path.display()
            ))
        })?;
        let txn = db.begin_write().db()?;
        {
            // Creating every table up front lets readers open them without
            // handling "table does not exist".
            let mut meta = txn.open_table(META).db()?;
            if meta.get(REVISION).db()?.is_none() {
                meta.insert(REVISION, INITIAL_REVISION).db()?;
            }
            if meta.get(COMPACT_REVISION).db()?.is_none() {
                meta.insert(COMPACT_REVISION, 0).db()?;
            }
            txn.open_table(KV).db()?;
            txn.open_table(HISTORY).db()?;
            txn.open_table(LEASES).db()?;
        }
        txn.commit().db()?;
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let store = Self {
            db: Arc::new(db),
            history_revisions: options.history_revisions,
            write_lock: Arc::new(Mutex::new(())),
            live,
            reaper: Arc::new(ReaperControl::default()),
        };
        // Keys put with a TTL before a restart expire on time too.
        if tokio::runtime::Handle::try_current().is_ok() {
            store.start_reaper();
        }
        Ok(store)
    }

    /// Starts the reaper task once (needs a Tokio runtime).
    fn start_reaper(&self) {
        if self.reaper.started.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(reap_loop(
            Arc::downgrade(&self.db),
            self.write_lock.clone(),
            self.live.clone(),
            self.history_revisions,
            self.reaper.clone(),
        ));
    }
}

/// Unix milliseconds on this machine's clock.
fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Applies `txn` (its expiry, if any, for its one put) and broadcasts the
/// commit, serialized with every other write.
fn commit(
    db: &Database,
    write_lock: &Mutex<()>,
    live: &broadcast::Sender<Arc<Committed>>,
    history_revisions: i64,
    txn: &Txn,
    expires_at_ms: Option<i64>,
) -> Result<TxnOutcome, StoreError> {
    let _serialized = write_lock.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(match apply(db, txn, history_revisions, expires_at_ms)? {
        Applied::CompareFailed { revision } => TxnOutcome {
            succeeded: false,
            revision,
        },
        Applied::Unchanged { revision } => TxnOutcome {
            succeeded: true,
            revision,
        },
        Applied::Committed(committed) => {
            let revision = committed.revision;
            // No receivers is fine: nobody is watching.
            let _ = live.send(Arc::new(committed));
            TxnOutcome {
                succeeded: true,
                revision,
            }
        }
    })
}

/// Deletes every key whose expiry is at or before `now_ms`; returns the
/// earliest expiry left, if any.
fn reap(
    db: &Database,
    write_lock: &Mutex<()>,
    live: &broadcast::Sender<Arc<Committed>>,
    history_revisions: i64,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let (expired, next) = {
        let txn = db.begin_read().db()?;
        let leases = txn.open_table(LEASES).db()?;
        let mut expired = Vec::new();
        let mut next: Option<i64> = None;
        for entry in leases.iter().db()? {
            let (key, at) = entry.db()?;
            let at = at.value();
            if at <= now_ms {
                expired.push(key.value().to_owned());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (expired, next)
    };
    for batch in expired.chunks(MAX_TXN_OPS) {
        // A key written again since the read above has no expiry row any
        // more, or a later one: `apply_expiry` reads the rows again under the
        // write lock and leaves such a key alone.
        let _serialized = write_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(committed) = apply_expiry(db, batch, now_ms, history_revisions)? {
            let _ = live.send(Arc::new(committed));
        }
    }
    Ok(next)
}

/// Deletes those of `keys` whose expiry (read again inside the write) is at
/// or before `now_ms`, at one new revision.
fn apply_expiry(
    db: &Database,
    keys: &[String],
    now_ms: i64,
    history_revisions: i64,
) -> Result<Option<Committed>, StoreError> {
    let still_expired: Vec<String> = {
        let txn = db.begin_read().db()?;
        let leases = txn.open_table(LEASES).db()?;
        let mut out = Vec::new();
        for key in keys {
            if leases
                .get(key.as_str())
                .db()?
                .is_some_and(|at| at.value() <= now_ms)
            {
                out.push(key.clone());
            }
        }
        out
    };
    if still_expired.is_empty() {
        return Ok(None);
    }
    let mut txn = Txn::new();
    for key in still_expired {
        txn = txn.delete(key);
    }
    // The caller holds the write lock, so nothing wrote between the read above
    // and this commit.
    Ok(match apply(db, &txn, history_revisions, None)? {
        Applied::Committed(committed) => Some(committed),
        Applied::CompareFailed { .. } | Applied::Unchanged { .. } => None,
    })
}

async fn reap_loop(
    db: Weak<Database>,
    write_lock: Arc<Mutex<()>>,
    live: broadcast::Sender<Arc<Committed>>,
    history_revisions: i64,
    control: Arc<ReaperControl>,
) {
    loop {
        if control.closed.load(Ordering::SeqCst) {
            return;
        }
        let Some(strong) = db.upgrade() else { return };
        let (write_lock2, live2) = (write_lock.clone(), live.clone());
        let result = tokio::task::spawn_blocking(move || {
            reap(
                &strong,
                &write_lock2,
                &live2,
                history_revisions,
                unix_ms(SystemTime::now()),
            )
        })
        .await;
        let wait = match result {
            Ok(Ok(Some(next))) => {
                let ms = next.saturating_sub(unix_ms(SystemTime::now())).max(1);
                Some(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "embedded store: expiring keys failed; retrying");
                Some(REAPER_RETRY)
            }
            Err(e) => {
                tracing::warn!(error = %e, "embedded store: the expiry task failed; retrying");
                Some(REAPER_RETRY)
            }
        };
        match wait {
            Some(wait) => {
                let _ = tokio::time::timeout(wait, control.wake.notified()).await;
            }
            None => control.wake.notified().await,
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let db = self.db.clone();
        let key = key.to_owned();
        blocking(move || {
            let txn = db.begin_read().db()?;
            let kv = txn.open_table(KV).db()?;
            let found = kv.get(key.as_str()).db()?;
            Ok(found.map(|stored| to_key_value(&key, stored.value())))
        })
        .await
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let db = self.db.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let txn = db.begin_read().db()?;
            let revision = read_meta(&txn.open_table(META).db()?, REVISION)?;
            let kv = txn.open_table(KV).db()?;
            let mut kvs = Vec::new();
            for entry in kv.range(prefix.as_str()..).db()? {
                let (key, stored) = entry.db()?;
                let key = key.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                kvs.push(to_key_value(key, stored.value()));
            }
            Ok(Range { kvs, revision })
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        check_txn(&txn)?;
        let db = self.db.clone();
        let write_lock = self.write_lock.clone();
        let live = self.live.clone();
        let history_revisions = self.history_revisions;
        blocking(move || commit(&db, &write_lock, &live, history_revisions, &txn, None)).await
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<i64, StoreError> {
        let txn = Txn::new().put(key, value);
        check_txn(&txn)?;
        self.start_reaper();
        let expires_at = SystemTime::now().checked_add(ttl).map_or(i64::MAX, unix_ms);
        let db = self.db.clone();
        let write_lock = self.write_lock.clone();
        let live = self.live.clone();
        let history_revisions = self.history_revisions;
        let outcome = blocking(move || {
            commit(
                &db,
                &write_lock,
                &live,
                history_revisions,
                &txn,
                Some(expires_at),
            )
        })
        .await?;
        // This one may expire before whatever the reaper sleeps for.
        self.reaper.wake.notify_one();
        Ok(outcome.revision)
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        check_watch_start(from_revision)?;
        // Subscribing before the first history read is what guarantees that
        // every commit is either in that read or in the broadcast.
        let watcher = Watcher {
            db: self.db.clone(),
            live: self.live.subscribe(),
            prefix: Arc::from(prefix),
            next: from_revision,
            pending: VecDeque::new(),
            phase: Phase::CatchUp,
        };
        Ok(Box::pin(futures::stream::unfold(watcher, Watcher::next)))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().db()?;
            {
                let mut meta = txn.open_table(META).db()?;
                let current = read_meta(&meta, REVISION)?;
                let compacted = read_meta(&meta, COMPACT_REVISION)?;
                if revision > current {
                    return Err(StoreError::Other(format!(
                        "cannot compact to revision {revision}: it is in the future \
                         (current revision {current})"
                    )));
                }
                if revision <= compacted {
                    return Err(StoreError::Compacted {
                        requested: revision,
                        compact_revision: compacted,
                    });
                }
                let mut history = txn.open_table(HISTORY).db()?;
                compact_history(&mut meta, &mut history, revision)?;
            }
            txn.commit().db()
        })
        .await
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().db()?;
            read_meta(&txn.open_table(META).db()?, REVISION)
        })
        .await
    }
}

/// Rejects what etcd rejects before touching the store: too many compares or
/// ops, and a key written twice (etcd: "duplicate key given in txn request";
/// deleting a key twice is allowed).
fn check_txn(txn: &Txn) -> Result<(), StoreError> {
    if txn.compares.len() > MAX_TXN_OPS || txn.ops.len() > MAX_TXN_OPS {
        return Err(StoreError::TooLarge(format!(
            "too many operations in txn request: {} compares and {} ops (at most {MAX_TXN_OPS} each)",
            txn.compares.len(),
            txn.ops.len()
        )));
    }
    let mut puts = std::collections::HashSet::new();
    for op in &txn.ops {
        if let Op::Put { key, .. } | Op::Delete { key } = op
            && key.is_empty()
        {
            return Err(StoreError::Other("key is not provided".to_owned()));
        }
        if let Op::Put { key, .. } = op
            && !puts.insert(key.as_str())
        {
            return Err(duplicate_key(key));
        }
    }
    for op in &txn.ops {
        if let Op::Delete { key } = op
            && puts.contains(key.as_str())
        {
            return Err(duplicate_key(key));
        }
    }
    Ok(())
}

fn duplicate_key(key: &str) -> StoreError {
    StoreError::Other(format!("duplicate key given in txn request: {key:?}"))
}

/// What [`apply`] did.
enum Applied {
    CompareFailed {
        revision: i64,
    },
    /// Every op deleted an absent key (or there were none): like etcd, no new
    /// revision.
    Unchanged {
        revision: i64,
    },
    Committed(Committed),
}

/// Checks the compares and applies the ops in one write transaction, then
/// compacts history beyond `history_revisions`. Every key written loses its
/// expiry; with `expires_at_ms`, the puts get that one.
fn apply(
    db: &Database,
    txn: &Txn,
    history_revisions: i64,
    expires_at_ms: Option<i64>,
) -> Result<Applied, StoreError> {
    let write = db.begin_write().db()?;
    let committed = {
        let mut meta = write.open_table(META).db()?;
        let mut kv = write.open_table(KV).db()?;
        let mut leases = write.open_table(LEASES).db()?;
        let current = read_meta(&meta, REVISION)?;
        for Compare::ModRevision { key, mod_revision } in &txn.compares {
            let actual = kv
                .get(key.as_str())
                .db()?
                .map_or(0, |stored| stored.value().1);
            if actual != *mod_revision {
                return Ok(Applied::CompareFailed { revision: current });
            }
        }
        let revision = current + 1;
        let mut events = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            match op {
                Op::Put { key, value } => {
                    let previous = kv
                        .get(key.as_str())
                        .db()?
                        .map(|stored| (stored.value().0, stored.value().2));
                    let (create_revision, version) =
                        previous.map_or((revision, 1), |(created, version)| (created, version + 1));
                    kv.insert(
                        key.as_str(),
                        (create_revision, revision, version, value.as_slice()),
                    )
                    .db()?;
                    match expires_at_ms {
                        Some(at) => {
                            leases.insert(key.as_str(), at).db()?;
                        }
                        None => {
                            leases.remove(key.as_str()).db()?;
                        }
                    }
                    events.push(Event {
                        kind: EventKind::Put,
                        kv: KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: revision,
                            version,
                        },
                    });
                }
                Op::Delete { key } => {
                    leases.remove(key.as_str()).db()?;
                    if kv.remove(key.as_str()).db()?.is_some() {
                        events.push(deleted(key.clone(), revision));
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(Applied::Unchanged { revision: current });
        }
        let stored: Vec<(bool, &str, &[u8], i64, i64)> = events
            .iter()
            .map(|event| {
                (
                    event.kind == EventKind::Delete,
                    event.kv.key.as_str(),
                    event.kv.value.as_slice(),
                    event.kv.create_revision,
                    event.kv.version,
                )
            })
            .collect();
        let mut history = write.open_table(HISTORY).db()?;
        history.insert(revision, stored).db()?;
        meta.insert(REVISION, revision).db()?;
        let horizon = revision - history_revisions;
        if horizon > read_meta(&meta, COMPACT_REVISION)? {
            compact_history(&mut meta, &mut history, horizon)?;
        }
        Committed { revision, events }
    };
    write.commit().db()?;
    Ok(Applied::Committed(committed))
}

fn compact_history(
    meta: &mut redb::Table<&str, i64>,
    history: &mut redb::Table<i64, Vec<StoredEvent>>,
    revision: i64,
) -> Result<(), StoreError> {
    history.retain_in(..=revision, |_, _| false).db()?;
    meta.insert(COMPACT_REVISION, revision).db()?;
    Ok(())
}

fn read_meta(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64, StoreError> {
    meta.get(name)
        .db()?
        .map(|value| value.value())
        .ok_or_else(|| StoreError::Other(format!("embedded store is missing its {name}")))
}

fn to_key_value(
    key: &str,
    (create_revision, mod_revision, version, value): (i64, i64, i64, &[u8]),
) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
        version,
    }
}

/// A delete as etcd reports it: no value, no create revision or version.
fn deleted(key: String, revision: i64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Vec::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
        },
    }
}

/// What one history read found, from a watcher's next revision onwards.
enum HistoryRead {
    /// The watcher's next revision is compacted away.
    Compacted(i64),
    Batch {
        messages: Vec<WatchMessage>,
        /// The first revision this read did not cover.
        next: i64,
        /// Whether the read reached the store's current revision.
        caught_up: bool,
    },
}

fn read_history(db: &Database, prefix: &str, from: i64) -> Result<HistoryRead, StoreError> {
    let txn = db.begin_read().db()?;
    let meta = txn.open_table(META).db()?;
    let compacted = read_meta(&meta, COMPACT_REVISION)?;
    if from <= compacted {
        return Ok(HistoryRead::Compacted(compacted));
    }
    let current = read_meta(&meta, REVISION)?;
    let history = txn.open_table(HISTORY).db()?;
    let mut messages = Vec::new();
    let mut last = None;
    for (read, entry) in history.range(from..=current).db()?.enumerate() {
        if read == HISTORY_BATCH {
            break;
        }
        let (revision, stored) = entry.db()?;
        let revision = revision.value();
        last = Some(revision);
        let events: Vec<Event> = stored
            .value()
            .into_iter()
            .filter(|(_, key, ..)| key.starts_with(prefix))
            .map(|(is_delete, key, value, create_revision, version)| {
                if is_delete {
                    deleted(key.to_owned(), revision)
                } else {
                    Event {
                        kind: EventKind::Put,
                        kv: KeyValue {
                            key: key.to_owned(),
                            value: value.to_vec(),
                            create_revision,
                            mod_revision: revision,
                            version,
                        },
                    }
                }
            })
            .collect();
        if !events.is_empty() {
            messages.push(WatchMessage::Events { revision, events });
        }
    }
    let (next, caught_up) = match last {
        Some(last) if last < current => (last + 1, false),
        // A watch may start past the current revision; it then waits for it.
        _ => (from.max(current + 1), true),
    };
    Ok(HistoryRead::Batch {
        messages,
        next,
        caught_up,
    })
}

enum Phase {
    /// Reading the history table from `next`.
    CatchUp,
    /// Following the broadcast of new commits.
    Live,
    Ended,
}

/// The state behind one watch stream.
struct Watcher {
    db: Arc<Database>,
    live: broadcast::Receiver<Arc<Committed>>,
    prefix: Arc<str>,
    /// The next revision this watcher owes its reader.
    next: i64,
    pending: VecDeque<WatchMessage>,
    phase: Phase,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<WatchMessage, StoreError>, Self)> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some((Ok(message), self));
            }
            match self.phase {
                Phase::Ended => return None,
                Phase::CatchUp => {
                    let db = self.db.clone();
                    let prefix = self.prefix.clone();
                    let from = self.next;
                    match blocking(move || read_history(&db, &prefix, from)).await {
                        Err(error) => {
                            self.phase = Phase::Ended;
                            return Some((Err(error), self));
                        }
                        Ok(HistoryRead::Compacted(compact_revision)) => {
                            self.phase = Phase::Ended;
                            return Some((Ok(WatchMessage::Compacted { compact_revision }), self));
                        }
                        Ok(HistoryRead::Batch {
                            messages,
                            next,
                            caught_up,
                        }) => {
                            self.pending.extend(messages);
                            self.next = next;
                            if caught_up {
                                self.phase = Phase::Live;
                            }
                        }
                    }
                }
                Phase::Live => match self.live.recv().await {
                    Ok(committed) if committed.revision < self.next => {}
                    Ok(committed) if committed.revision == self.next => {
                        let events: Vec<Event> = committed
                            .events
                            .iter()
                            .filter(|event| event.kv.key.starts_with(&*self.prefix))
                            .cloned()
                            .collect();
                        if !events.is_empty() {
                            self.pending.push_back(WatchMessage::Events {
                                revision: committed.revision,
                                events,
                            });
                        }
                        self.next += 1;
                    }
                    // A gap: the missing revisions are in the history table.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.phase = Phase::CatchUp;
                    }
                    // The store was dropped.
                    Err(broadcast::error::RecvError::Closed) => self.phase = Phase::Ended,
                },
            }
        }
    }
}

/// Runs blocking database work off the async workers.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Other(format!("embedded store task failed: {e}")))?
}

/// redb's errors, as the store's.
trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> DbResult<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Other(format!("embedded store: {}", e.into())))
    }
}
