//! Which data planes are connected, and what they have applied.
//!
//! Each replica keeps the status of its own streams in memory (fresh, for
//! its own answers) and writes it to the store under
//! `/sluice-status/data_planes/{node_id}` (outside `/sluice/`, so status
//! writes never reach the config watch), so any replica can answer for every
//! data plane. Writes are coalesced per stream (at most one per
//! [`FLUSH_EVERY`]) and refreshed every [`HEARTBEAT_EVERY`]; a record whose
//! heartbeat is older than [`STALE_AFTER`] is treated as disconnected (its
//! replica died). A stream only writes over a record it wrote itself (compare
//! on mod_revision), so an old stream closing cannot mark a data plane that
//! already reconnected elsewhere as disconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prost::Message;
use sluice_proto::admin::v1::DataPlaneStatus;
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::store::{Store, Txn};

/// Where statuses live in the store.
pub const STATUS_PREFIX: &str = "/sluice-status/data_planes/";
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// Disconnected records older than this are left out of listings.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

fn age(t: Option<&prost_types::Timestamp>) -> Duration {
    let Some(t) = t else { return Duration::MAX };
    let Ok(at) = SystemTime::try_from(*t) else {
        return Duration::MAX;
    };
    SystemTime::now().duration_since(at).unwrap_or_default()
}

/// The statuses of this replica's streams.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    replica_id: String,
    next_stream: AtomicU64,
    local: Mutex<HashMap<u64, DataPlaneStatus>>,
    /// Woken on every ACK/NACK/connect/disconnect, for WaitForRevision.
    changed: Notify,
    /// Every stream's `write_status`, so shutdown can wait for the
    /// disconnects to be written.
    writers: TaskTracker,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, replica_id: String, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                metrics,
                replica_id,
                next_stream: AtomicU64::new(1),
                local: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                writers: TaskTracker::new(),
            }),
        }
    }

    pub fn replica_id(&self) -> &str {
        &self.inner.replica_id
    }

    /// How many streams this replica holds.
    pub fn streams(&self) -> usize {
        self.lock().len()
    }

    /// Resolves once every stream's status writer has ended: after the
    /// streams have closed, once their disconnects are written (one store
    /// call each). Only for shutdown: writers of open streams never end.
    pub async fn flushed(&self) {
        self.inner.writers.close();
        self.inner.writers.wait().await;
    }

    /// Registers a new stream; the returned handle records its progress and
    /// marks it disconnected when dropped.
    pub fn connect(
        &self,
        node_id: String,
        labels: HashMap<String, String>,
        held: i64,
        version: String,
    ) -> StreamStatus {
        let id = self.inner.next_stream.fetch_add(1, Ordering::Relaxed);
        let status = DataPlaneStatus {
            node_id,
            labels,
            control_plane_id: self.inner.replica_id.clone(),
            connected: true,
            connected_since: Some(now()),
            applied_revision: held,
            version,
            heartbeat_at: Some(now()),
            ..Default::default()
        };
        self.lock().insert(id, status.clone());
        self.inner.metrics.data_plane_streams.inc();
        let (tx, rx) = watch::channel(status);
        self.inner
            .writers
            .spawn(write_status(self.inner.store.clone(), rx));
        self.inner.changed.notify_waiters();
        StreamStatus {
            id,
            registry: self.clone(),
            tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, DataPlaneStatus>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every update is a single insert), so a poisoned lock is still usable.
        self.inner.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the next status change of a local stream (or `within`).
    pub async fn changed(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.inner.changed.notified()).await;
    }

    /// Every known data plane: records from the store, overridden by this
    /// replica's own (fresher) ones; stale records count as disconnected.
    pub async fn list(&self) -> Result<Vec<DataPlaneStatus>, crate::store::StoreError> {
        let range = self.inner.store.range(STATUS_PREFIX).await?;
        let mut by_node: HashMap<String, DataPlaneStatus> = HashMap::new();
        for kv in range.kvs {
            match DataPlaneStatus::decode(kv.value.as_slice()) {
                Ok(mut s) => {
                    if s.connected && age(s.heartbeat_at.as_ref()) > STALE_AFTER {
                        s.connected = false;
                    }
                    if !s.connected && age(s.heartbeat_at.as_ref()) > FORGET_AFTER {
                        continue;
                    }
                    by_node.insert(s.node_id.clone(), s);
                }
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e, "undecodable data-plane status")
                }
            }
        }
        for s in self.lock().values() {
            let newer = by_node.get(&s.node_id).is_none_or(|other| {
                !other.connected || other.control_plane_id == s.control_plane_id
            });
            if newer {
                by_node.insert(s.node_id.clone(), s.clone());
            }
        }
        let mut all: Vec<_> = by_node.into_values().collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(all)
    }
}

/// One stream's status; dropping it records the disconnect.
pub struct StreamStatus {
    id: u64,
    registry: Registry,
    tx: watch::Sender<DataPlaneStatus>,
}

impl StreamStatus {
    fn update(&self, f: impl FnOnce(&mut DataPlaneStatus)) {
        let mut local = self.registry.lock();
        if let Some(status) = local.get_mut(&self.id) {
            f(status);
            self.tx.send_replace(status.clone());
        }
        drop(local);
        self.registry.inner.changed.notify_waiters();
    }

    pub fn ack(&self, revision: i64) {
        self.update(|s| {
            s.applied_revision = s.applied_revision.max(revision);
            s.last_ack_at = Some(now());
        });
    }

    pub fn nack(&self, revision: i64, reason: String) {
        self.update(|s| {
            s.last_nack_revision = revision;
            s.last_nack_reason = reason;
            s.last_nack_at = Some(now());
        });
    }
}

impl Drop for StreamStatus {
    fn drop(&mut self) {
        let mut local = self.registry.lock();
        if let Some(mut status) = local.remove(&self.id) {
            status.connected = false;
            status.heartbeat_at = Some(now());
            self.tx.send_replace(status);
            self.registry.inner.metrics.data_plane_streams.dec();
        }
        drop(local);
        self.registry.inner.changed.notify_waiters();
    }
}

/// Writes a stream's status to the store: coalesced, heartbeated, and only
/// over a record this stream wrote itself.
async fn write_status(store: Arc<dyn Store>, mut rx: watch::Receiver<DataPlaneStatus>) {
    let mut our_revision: Option<i64> = None;
    loop {
        let mut status = rx.borrow_and_update().clone();
        let disconnected = !status.connected;
        status.heartbeat_at = Some(now());
        let key = format!("{STATUS_PREFIX}{}", status.node_id);
        let mut txn = Txn::new();
        if let Some(rev) = our_revision {
            txn = txn.when_mod_revision(key.clone(), rev);
        }
        match store
            .txn(txn.put(key.clone(), status.encode_to_vec()))
            .await
        {
            Ok(o) if o.succeeded => our_revision = Some(o.revision),
            Ok(_) => {
                // Someone else (a newer stream of this node) owns the record.
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, node_id = %status.node_id, "cannot write data-plane status")
            }
        }
        if disconnected {
            return;
        }
        tokio::time::sleep(FLUSH_EVERY).await;
        match tokio::time::timeout(HEARTBEAT_EVERY, rx.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => {
                // The stream is gone without a final status (should not happen:
                // Drop sends one); write what we have as disconnected.
                let mut last = rx.borrow().clone();
                last.connected = false;
                let key = format!("{STATUS_PREFIX}{}", last.node_id);
                if let Some(rev) = our_revision {
                    let txn = Txn::new()
                        .when_mod_revision(key.clone(), rev)
                        .put(key, last.encode_to_vec());
                    let _ = store.txn(txn).await;
                }
                return;
            }
        }
    }
}
