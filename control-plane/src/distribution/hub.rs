//! The hub: one list + watch of the store per control-plane replica, shared
//! by every data-plane stream it serves.
//!
//! It lists everything under `/sluice/` at one revision, then watches from
//! that revision + 1. Changes arriving within [`BATCH_WINDOW`] are applied
//! together and published as one new [`Published`] value on a
//! `tokio::sync::watch` channel: streams always read the newest value, so a
//! slow data plane skips intermediate states instead of queueing them. Each
//! published value keeps a bounded per-revision history, from which a delta
//! from any covered revision is merged on demand (and the delta from the
//! previous value, which most streams need, is merged once and shared). On
//! compaction the hub re-lists and drops its history, so streams behind it
//! get a fresh snapshot.
//!
//! Usage (`/sluice/usage/`, [`crate::usage`]) lives under `/sluice/` for
//! etcd permissions but is no part of the configuration: its events are
//! skipped before anything else looks at them, and a batch made only of
//! them publishes nothing (else every data plane would get an empty delta
//! per usage report). What the hub has seen, published or not, is tracked
//! apart ([`Hub::wait_for`]), so waiting for the store's revision still
//! returns promptly when the newest writes were usage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use prost::bytes::Bytes;
use sluice_proto::admin::v1::InvalidObject;
use sluice_proto::wire::{DeltaWire, SnapshotWire};
use tokio::sync::watch;
use tokio::time::Instant;

use super::objects::{self, Address, Object};
use crate::metrics::Metrics;
use crate::resources::ROOT;
use crate::store::{EventKind, KeyValue, Store, WatchMessage};
use crate::usage::paths::USAGE_PREFIX;

/// How long the hub waits for more changes after the first of a burst.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Most revisions of history kept for resuming data planes.
pub const HISTORY_MAX_REVISIONS: usize = 10_000;
/// Most bytes of history kept (encoded size of the changed objects).
pub const HISTORY_MAX_BYTES: usize = 64 << 20;

/// Backoff while the store is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What changed at one revision: the new object, or `None` for a removal.
#[derive(Debug)]
struct Entry {
    revision: i64,
    changes: Vec<(Address, Option<Arc<Object>>)>,
    bytes: usize,
}

/// The configuration at one revision, as every stream of this replica sees it.
pub struct Published {
    /// Bumps every time the hub (re-)lists the store.
    pub epoch: u64,
    /// The store revision this configuration is complete up to.
    pub revision: i64,
    /// The revision published before this one (same epoch), if any.
    previous_revision: Option<i64>,
    objects: imbl::OrdMap<Address, Arc<Object>>,
    history: imbl::Vector<Arc<Entry>>,
    history_bytes: usize,
    /// History covers every change after this revision.
    history_base: i64,
    /// Stored values refused for distribution, by store key.
    pub invalid: Arc<BTreeMap<String, InvalidObject>>,
    /// The encoded `Snapshot`, built once per published value.
    snapshot: OnceLock<Bytes>,
    /// The encoded `Delta` from `previous_revision`, which most streams need.
    previous_delta: OnceLock<Option<Bytes>>,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("epoch", &self.epoch)
            .field("revision", &self.revision)
            .field("objects", &self.objects.len())
            .field("history", &self.history.len())
            .field("invalid", &self.invalid.len())
            .finish()
    }
}

impl Published {
    fn empty() -> Self {
        Self {
            epoch: 0,
            revision: 0,
            previous_revision: None,
            objects: imbl::OrdMap::new(),
            history: imbl::Vector::new(),
            history_bytes: 0,
            history_base: 0,
            invalid: Arc::new(BTreeMap::new()),
            snapshot: OnceLock::new(),
            previous_delta: OnceLock::new(),
        }
    }

    /// Whether the hub has listed the store at least once.
    pub fn is_loaded(&self) -> bool {
        self.epoch > 0
    }

    /// The distributed object of `kind` with this id, as checked (keys
    /// still encoded).
    pub fn get(&self, kind: sluice_proto::config::v1::Kind, id: &str) -> Option<&Arc<Object>> {
        self.objects
            .get(&Address::Distributed(kind, id.to_string()))
    }

    /// Whether a data-plane token with this SHA-256 hex exists.
    pub fn has_token(&self, sha256_hex: &str) -> bool {
        self.objects
            .contains_key(&Address::Token(sha256_hex.to_string()))
    }

    /// The full configuration as an encoded `Snapshot`, built once per
    /// published value and shared by every stream that needs it.
    pub fn snapshot(&self) -> Bytes {
        self.snapshot
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let encoded = objects::encode_snapshot(self.revision, self.objects.values());
                tracing::info!(
                    revision = self.revision,
                    bytes = encoded.len(),
                    took_ms = started.elapsed().as_secs_f64() * 1e3,
                    "snapshot encoded"
                );
                Bytes::from(encoded)
            })
            .clone()
    }

    /// [`Published::snapshot`], encoded (the first time) on a blocking
    /// thread: a large config takes a while, and the runtime's threads serve
    /// every other stream and call meanwhile.
    pub async fn snapshot_off_runtime(
        published: &Arc<Published>,
    ) -> Result<Bytes, tokio::task::JoinError> {
        let published = Arc::clone(published);
        tokio::task::spawn_blocking(move || published.snapshot()).await
    }

    /// The changes from `from` to this revision as an encoded `Delta`, if the
    /// history covers them.
    pub fn delta_since(&self, from: i64) -> Option<Bytes> {
        if from < self.history_base || from > self.revision {
            return None;
        }
        if Some(from) == self.previous_revision {
            return self
                .previous_delta
                .get_or_init(|| Some(Bytes::from(self.merge(from).encode_to_vec())))
                .clone();
        }
        Some(Bytes::from(self.merge(from).encode_to_vec()))
    }

    fn merge(&self, from: i64) -> DeltaWire {
        let mut last: HashMap<&Address, &Option<Arc<Object>>> = HashMap::new();
        // History is in revision order; later changes of an address win.
        for entry in self.history.iter().filter(|e| e.revision > from) {
            for (address, change) in &entry.changes {
                last.insert(address, change);
            }
        }
        let mut upserts = SnapshotWire {
            revision: self.revision,
            ..Default::default()
        };
        let mut removals = Vec::new();
        let mut ordered: Vec<_> = last.into_iter().collect();
        ordered.sort_by(|a, b| a.0.cmp(b.0));
        for (address, change) in ordered {
            match change {
                Some(object) => objects::push(&mut upserts, object),
                None => removals.extend(address.object_ref()),
            }
        }
        DeltaWire {
            from_revision: from,
            to_revision: self.revision,
            upserts: Some(upserts),
            removals,
        }
    }
}

/// A replica's handle on the hub.
#[derive(Clone)]
pub struct Hub {
    rx: watch::Receiver<Arc<Published>>,
    /// The newest store revision the hub has taken in, published or not:
    /// a revision that changed no configuration (usage) moves only this.
    seen: watch::Receiver<i64>,
}

impl Hub {
    /// Starts the hub's list + watch loop on the runtime.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Hub {
        let (tx, rx) = watch::channel(Arc::new(Published::empty()));
        let (seen_tx, seen) = watch::channel(0);
        tokio::spawn(run(store, tx, seen_tx, metrics));
        Hub { rx, seen }
    }

    /// The newest published configuration.
    pub fn current(&self) -> Arc<Published> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every publication (coalescing missed ones).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.rx.clone()
    }

    /// Waits until the hub has taken in `revision` or later, up to
    /// `within`: [`Hub::current`] is then the configuration as of that
    /// revision (a revision that changed no configuration is taken in
    /// without a publication).
    pub async fn wait_for(&self, revision: i64, within: Duration) -> bool {
        let mut seen = self.seen.clone();
        tokio::time::timeout(within, seen.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Decodes one stored value into the maps, recording refusals.
fn load(
    kv: &KeyValue,
    objects: &mut imbl::OrdMap<Address, Arc<Object>>,
    invalid: &mut BTreeMap<String, InvalidObject>,
    metrics: &Metrics,
) -> Option<(Address, Option<Arc<Object>>)> {
    let address = objects::address_of(&kv.key)?;
    match objects::decode_object(&address, &kv.value, kv.mod_revision) {
        Ok(object) => {
            invalid.remove(&kv.key);
            let object = Arc::new(object);
            objects.insert(address.clone(), object.clone());
            Some((address, Some(object)))
        }
        Err(reason) => {
            metrics.invalid_objects_seen.inc();
            tracing::error!(key = %kv.key, revision = kv.mod_revision, %reason,
                "refusing to distribute an invalid stored value");
            invalid.insert(
                kv.key.clone(),
                objects::invalid(&kv.key, kv.mod_revision, reason),
            );
            // What was there before is gone from the store: stop distributing it.
            objects.remove(&address).map(|_| (address, None))
        }
    }
}

/// Publishes `current` and reflects it in the metrics.
fn publish(tx: &watch::Sender<Arc<Published>>, current: &Published, metrics: &Metrics) {
    metrics.config_revision.set(current.revision);
    metrics.invalid_objects.set(current.invalid.len() as i64);
    tx.send_replace(Arc::new(clone_published(current)));
}

async fn run(
    store: Arc<dyn Store>,
    tx: watch::Sender<Arc<Published>>,
    seen: watch::Sender<i64>,
    metrics: Arc<Metrics>,
) {
    let mut epoch = 0u64;
    let mut retry = RETRY_MIN;
    loop {
        let range = match store.range(ROOT).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "hub: cannot list the store; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        retry = RETRY_MIN;
        epoch += 1;
        let mut objects = imbl::OrdMap::new();
        let mut invalid = BTreeMap::new();
        metrics.hub_lists.inc();
        for kv in &range.kvs {
            load(kv, &mut objects, &mut invalid, &metrics);
        }
        tracing::info!(
            revision = range.revision,
            objects = objects.len(),
            invalid = invalid.len(),
            epoch,
            "hub: listed the store"
        );
        let mut current = Published {
            epoch,
            revision: range.revision,
            objects,
            history_base: range.revision,
            invalid: Arc::new(invalid),
            ..Published::empty()
        };
        publish(&tx, &current, &metrics);
        // Published first, so that whoever sees the revision finds its config.
        seen.send_replace(range.revision);
        if watch_until_relist(&store, &tx, &seen, &mut current, &metrics)
            .await
            .is_closed()
        {
            return;
        }
    }
}

fn clone_published(p: &Published) -> Published {
    Published {
        epoch: p.epoch,
        revision: p.revision,
        previous_revision: p.previous_revision,
        objects: p.objects.clone(),
        history: p.history.clone(),
        history_bytes: p.history_bytes,
        history_base: p.history_base,
        invalid: p.invalid.clone(),
        snapshot: OnceLock::new(),
        previous_delta: OnceLock::new(),
    }
}

enum WatchEnd {
    Relist,
    Closed,
}

impl WatchEnd {
    fn is_closed(&self) -> bool {
        matches!(self, WatchEnd::Closed)
    }
}

/// Follows the store from `current.revision + 1`, publishing each batch
/// that changed configuration, until the watch reports compaction (re-list)
/// or nobody listens.
async fn watch_until_relist(
    store: &Arc<dyn Store>,
    tx: &watch::Sender<Arc<Published>>,
    seen: &watch::Sender<i64>,
    current: &mut Published,
    metrics: &Metrics,
) -> WatchEnd {
    let mut retry = RETRY_MIN;
    // Past `current.revision` when the newest revisions were usage only: a
    // new watch resumes after them rather than replaying them.
    let mut seen_through = current.revision;
    loop {
        if tx.is_closed() {
            return WatchEnd::Closed;
        }
        let mut stream = match store.watch(ROOT, seen_through + 1).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "hub: cannot watch the store; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        loop {
            let first = match stream.next().await {
                Some(Ok(WatchMessage::Events { revision, events })) => (revision, events),
                Some(Ok(WatchMessage::Compacted { compact_revision })) => {
                    tracing::warn!(
                        compact_revision,
                        revision = current.revision,
                        "hub: the store compacted past our revision; re-listing"
                    );
                    return WatchEnd::Relist;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "hub: watch failed; watching again");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    break;
                }
                None => break,
            };
            retry = RETRY_MIN;
            let mut batch = vec![first];
            let deadline = Instant::now() + BATCH_WINDOW;
            let mut end = None;
            while let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await {
                match next {
                    Some(Ok(WatchMessage::Events { revision, events })) => {
                        batch.push((revision, events))
                    }
                    Some(Ok(WatchMessage::Compacted { .. })) => {
                        end = Some(true);
                        break;
                    }
                    Some(Err(_)) | None => {
                        end = Some(false);
                        break;
                    }
                }
            }
            let last = batch.last().map_or(seen_through, |(revision, _)| *revision);
            if apply_batch(current, batch, metrics) {
                publish(tx, current, metrics);
            }
            seen_through = seen_through.max(last);
            seen.send_replace(seen_through);
            match end {
                Some(true) => return WatchEnd::Relist,
                Some(false) => break,
                None => {}
            }
        }
    }
}

/// Applies a batch of watch events to `current` and records them in
/// history. Usage events are dropped first; a revision made only of them
/// leaves no trace. Returns whether anything else was in the batch, i.e.
/// whether `current` is a new configuration to publish.
fn apply_batch(
    current: &mut Published,
    batch: Vec<(i64, Vec<crate::store::Event>)>,
    metrics: &Metrics,
) -> bool {
    let previous = current.revision;
    let mut invalid = (*current.invalid).clone();
    let mut configuration = false;
    for (revision, mut events) in batch {
        events.retain(|e| !e.kv.key.starts_with(USAGE_PREFIX));
        if events.is_empty() {
            continue;
        }
        configuration = true;
        let mut changes = Vec::with_capacity(events.len());
        let mut bytes = 0usize;
        for event in events {
            match event.kind {
                EventKind::Put => {
                    if let Some(change) =
                        load(&event.kv, &mut current.objects, &mut invalid, metrics)
                    {
                        bytes += event.kv.value.len() + event.kv.key.len();
                        changes.push(change);
                    }
                }
                EventKind::Delete => {
                    invalid.remove(&event.kv.key);
                    if let Some(address) = objects::address_of(&event.kv.key)
                        && current.objects.remove(&address).is_some()
                    {
                        bytes += event.kv.key.len();
                        changes.push((address, None));
                    }
                }
            }
        }
        current.history.push_back(Arc::new(Entry {
            revision,
            changes,
            bytes,
        }));
        current.history_bytes += bytes;
        current.revision = revision;
    }
    while current.history.len() > HISTORY_MAX_REVISIONS || current.history_bytes > HISTORY_MAX_BYTES
    {
        match current.history.pop_front() {
            Some(old) => {
                current.history_bytes -= old.bytes;
                current.history_base = old.revision;
            }
            None => break,
        }
    }
    if configuration {
        current.previous_revision = Some(previous);
        current.invalid = Arc::new(invalid);
    }
    configuration
}

#[cfg(test)]
mod tests {
    use sluice_proto::admin::v1::Team;

    use super::*;
    use crate::resources::{encode, key_of};
    use crate::store::Txn;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test(flavor = "multi_thread")]
    async fn usage_writes_are_seen_but_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let team = Team {
            team_id: "t".into(),
            ..Default::default()
        };
        let config = store
            .txn(Txn::new().put(key_of::<Team>("t"), encode(&team)))
            .await
            .unwrap()
            .revision;
        let hub = Hub::start(store.clone(), Arc::new(Metrics::new()));
        assert!(hub.wait_for(config, Duration::from_secs(5)).await);
        let mut publications = hub.subscribe();
        publications.borrow_and_update();
        let before = hub.current();

        let mut usage = 0;
        for i in 0..20 {
            usage = store
                .txn(
                    Txn::new()
                        .put(format!("/sluice/usage/totals/team/t{i}"), vec![1])
                        .put("/sluice/usage/journals/dp", vec![i]),
                )
                .await
                .unwrap()
                .revision;
        }
        // Seen promptly, as `token_appears` needs...
        assert!(hub.wait_for(usage, Duration::from_secs(5)).await);
        // ... and nothing published: same value, no history, no wake-up.
        assert!(!publications.has_changed().unwrap());
        let after = hub.current();
        assert!(Arc::ptr_eq(&before, &after));
        assert_eq!(after.revision, config);
        assert_eq!(after.history.len(), 0);

        // A configuration change after them is published, and its delta
        // from the last published revision holds only it.
        let team = Team {
            team_id: "t2".into(),
            ..Default::default()
        };
        let next = store
            .txn(Txn::new().put(key_of::<Team>("t2"), encode(&team)))
            .await
            .unwrap()
            .revision;
        assert!(hub.wait_for(next, Duration::from_secs(5)).await);
        let published = hub.current();
        assert_eq!(published.revision, next);
        assert_eq!(published.history.len(), 1);
        assert_eq!(published.previous_revision, Some(config));
        assert!(published.delta_since(config).is_some());
    }
}
