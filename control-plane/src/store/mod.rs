//! What the control plane needs from a store, and its two implementations.
//!
//! The model is etcd's: one global revision that every committed write
//! advances, `mod_revision` per key, transactions that compare before they
//! write, and watches that replay from any revision not yet compacted.
//! [`etcd::EtcdStore`] is the production store; [`embedded::EmbeddedStore`]
//! keeps the same semantics in a local database file for the quick start and
//! single-node use. Both pass the same conformance suite
//! (`tests/src/store_conformance.rs`).
//!
//! Nothing outside this module talks to etcd.

pub mod embedded;
pub mod etcd;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

/// etcd's default `--max-txn-ops`: the most compares, and the most operations,
/// one transaction may carry. The embedded store enforces the same limit so
/// that code tested on it also works on etcd.
pub const MAX_TXN_OPS: usize = 128;

/// A stored key with its value and etcd-style bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since it last did not exist).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
}

/// The result of a prefix range: every key under the prefix, sorted by key,
/// all read at one `revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
}

/// A condition a transaction checks before it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals this value; `0` means "does not exist".
    ModRevision { key: String, mod_revision: i64 },
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// All compares must hold for the ops to be applied, atomically, at one new
/// revision. At most [`MAX_TXN_OPS`] compares and [`MAX_TXN_OPS`] ops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn when_mod_revision(mut self, key: impl Into<String>, mod_revision: i64) -> Self {
        self.compares.push(Compare::ModRevision {
            key: key.into(),
            mod_revision,
        });
        self
    }

    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value,
        });
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// What a transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// False when a compare failed; nothing was written then.
    pub succeeded: bool,
    /// The revision the transaction committed at, or the store's current
    /// revision when it wrote nothing (a failed compare, or only deletes of
    /// absent keys, as in etcd).
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv.value` is empty and
/// `kv.mod_revision` is the revision of the delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// What a watch yields, in revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Every change of one revision under the watched prefix.
    Events { revision: i64, events: Vec<Event> },
    /// The revision the watch asked for is gone; re-list, then watch again.
    /// The stream ends after this message.
    Compacted { compact_revision: i64 },
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchMessage, StoreError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer within its deadline.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The requested revision has been compacted away.
    #[error("revision {requested} is compacted (store compacted up to {compact_revision})")]
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    /// More than [`MAX_TXN_OPS`] compares or ops, or a request over the size limit.
    #[error("transaction too large: {0}")]
    TooLarge(String),
    /// Anything else the store reported.
    #[error("store error: {0}")]
    Other(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One key, or `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, sorted, read at one revision (paged
    /// internally, so it works for millions of keys).
    async fn range(&self, prefix: &str) -> Result<Range, StoreError>;

    /// Applies `txn` atomically if all its compares hold.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// Puts `value` at `key`, unconditionally, to be deleted by the store
    /// itself once `ttl` has passed (watches then see a delete), so that what
    /// a writer leaves behind goes away even if the writer does. Returns the
    /// revision of the put. A later write to the key (with or without a TTL)
    /// replaces this one's expiry, as an etcd put with another (or no) lease
    /// does.
    ///
    /// The expiry is not exact: etcd rounds it up to whole seconds, at least
    /// [`etcd::MIN_LEASE_TTL`], and revokes an expired lease within about a
    /// second more; readers that care about the instant keep it in the value.
    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<i64, StoreError>;

    /// Changes under `prefix` from `from_revision` (inclusive) onwards, then
    /// live. A `from_revision` at or below the compacted revision yields one
    /// [`WatchMessage::Compacted`] and ends.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError>;

    /// Drops history up to and including `revision`.
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;

    /// The current revision. Also the health probe.
    async fn revision(&self) -> Result<i64, StoreError>;
}

/// A start revision below 1 means "from now" to etcd, which [`Store::watch`]
/// does not offer: it would silently skip changes. Both stores refuse it.
fn check_watch_start(from_revision: i64) -> Result<(), StoreError> {
    if from_revision < 1 {
        return Err(StoreError::Other(format!(
            "watch must start at revision 1 or later, not {from_revision}"
        )));
    }
    Ok(())
}
