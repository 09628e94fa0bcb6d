//! Each replica's view of every scope's totals, for its data planes'
//! admission: `/sluice/usage/totals/` listed and watched like the fleet
//! cooldowns are (list, watch from the list's revision + 1, list again after
//! compaction or when the watch cannot resume), held in memory as
//! `UsageTotal`s, and every change announced to the replica's sessions.
//!
//! Memory follows the scopes that have been used (a totals document exists
//! only once a report counted into it), not every key configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use sluice_proto::admin::v1::StoredUsageTotals;
use sluice_proto::config::v1::{UsageTotal, UsageTotals};
use tokio::sync::broadcast;

use super::ledger::total_of;
use super::paths::{Scope, TOTALS_PREFIX, scope_of_totals_key};
use crate::metrics::Metrics;
use crate::store::{EventKind, KeyValue, Store, WatchMessage};

/// Most totals in one `UsageTotals` message (about 100 bytes each).
pub const MAX_TOTALS_PER_MESSAGE: usize = 10_000;
/// Announcements buffered per session; a session further behind sends
/// everything again.
const ANNOUNCE_BUFFER: usize = 1024;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What a session hears.
#[derive(Clone, Debug)]
pub enum Announce {
    /// The totals one store revision changed.
    Changed(Arc<Vec<UsageTotal>>),
    /// The store was listed afresh: what was announced may have missed
    /// changes; send everything.
    Relisted,
}

/// A replica's handle on the totals in memory.
#[derive(Clone)]
pub struct Totals {
    held: Arc<Mutex<HashMap<Scope, UsageTotal>>>,
    announce: broadcast::Sender<Announce>,
}

impl Totals {
    /// Starts this replica's watcher on the runtime.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let (announce, _) = broadcast::channel(ANNOUNCE_BUFFER);
        let totals = Totals {
            held: Arc::new(Mutex::new(HashMap::new())),
            announce,
        };
        tokio::spawn(watcher(store, totals.clone(), metrics));
        totals
    }

    /// Subscribe before reading [`Totals::current`], so nothing falls
    /// between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Announce> {
        self.announce.subscribe()
    }

    /// Every total held.
    pub fn current(&self) -> Vec<UsageTotal> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Takes what a store key holds, if newer than what is held; returns it
    /// when it is.
    fn offer(&self, kv: &KeyValue) -> Option<UsageTotal> {
        let scope = scope_of_totals_key(&kv.key)?;
        let doc = match StoredUsageTotals::decode(kv.value.as_slice()) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "ignoring undecodable usage totals");
                return None;
            }
        };
        let total = total_of(&scope, &doc, kv.mod_revision);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get(&scope) {
            Some(h) if h.revision >= total.revision => None,
            _ => {
                held.insert(scope, total.clone());
                Some(total)
            }
        }
    }

    fn replace(&self, kvs: &[KeyValue]) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        for kv in kvs {
            self.offer(kv);
        }
        self.len()
    }

    fn forget(&self, key: &str) {
        if let Some(scope) = scope_of_totals_key(key) {
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&scope);
        }
    }

    pub fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `totals` as messages of at most [`MAX_TOTALS_PER_MESSAGE`]; none for none.
pub fn messages(totals: Vec<UsageTotal>) -> Vec<UsageTotals> {
    let mut out = Vec::with_capacity(totals.len().div_ceil(MAX_TOTALS_PER_MESSAGE));
    let mut rest = totals.into_iter().peekable();
    while rest.peek().is_some() {
        out.push(UsageTotals {
            totals: rest.by_ref().take(MAX_TOTALS_PER_MESSAGE).collect(),
        });
    }
    out
}

async fn watcher(store: Arc<dyn Store>, totals: Totals, metrics: Arc<Metrics>) {
    let mut retry = RETRY_MIN;
    loop {
        let range = match store.range(TOTALS_PREFIX).await {
            Ok(range) => range,
            Err(e) => {
                tracing::warn!(error = %e, "usage totals: cannot list the store; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        metrics.usage_totals.set(totals.replace(&range.kvs) as i64);
        // No receivers is fine: no session yet.
        let _ = totals.announce.send(Announce::Relisted);
        let mut from = range.revision + 1;
        'watch: loop {
            let mut stream = match store.watch(TOTALS_PREFIX, from).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "usage totals: cannot watch the store; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            };
            retry = RETRY_MIN;
            while let Some(message) = stream.next().await {
                match message {
                    Ok(WatchMessage::Events { revision, events }) => {
                        let mut changed = Vec::new();
                        for event in &events {
                            match event.kind {
                                EventKind::Put => changed.extend(totals.offer(&event.kv)),
                                EventKind::Delete => totals.forget(&event.kv.key),
                            }
                        }
                        metrics.usage_totals.set(totals.len() as i64);
                        if !changed.is_empty() {
                            let _ = totals.announce.send(Announce::Changed(Arc::new(changed)));
                        }
                        from = revision + 1;
                    }
                    Ok(WatchMessage::Compacted { .. }) => break 'watch,
                    Err(e) => {
                        tracing::warn!(error = %e, "usage totals: watch failed; watching again");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY_MAX);
                        continue 'watch;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_split_into_bounded_messages() {
        assert!(messages(vec![]).is_empty());
        let many: Vec<UsageTotal> = (0..MAX_TOTALS_PER_MESSAGE * 2 + 1)
            .map(|i| UsageTotal {
                id: i.to_string(),
                ..Default::default()
            })
            .collect();
        let m = messages(many);
        assert_eq!(
            m.iter().map(|m| m.totals.len()).collect::<Vec<_>>(),
            vec![MAX_TOTALS_PER_MESSAGE, MAX_TOTALS_PER_MESSAGE, 1]
        );
    }
}
